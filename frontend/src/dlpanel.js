// The DL panel (aided items only, i.e. only where the server sent `dl`): the model's probability, the overlay
// mode (fill + outline, outline, off), opacity, and the legend: one entry per label the server declared, in the
// colour it is drawn in, each with its own visibility switch.

import { h } from './dom.js';
import { rgbString } from './legend.js';
import { OVERLAY_MODES } from './overlay.js';

const MODE_NAMES = { fill_outline: 'Fill + outline', outline: 'Outline only', off: 'Off' };

export class DlPanel {
  constructor({ onChange }) {
    this.onChange = onChange;
    this.el = h('section', { class: 'ra-panel ra-dl', hidden: true });
    this.state = null;
  }

  hide() {
    this.el.hidden = true;
    this.el.replaceChildren();
    this.state = null;
  }

  /**
   * @param {object} dl        the item's `dl`
   * @param {object[]} entries legendEntries(dl.labels)
   * @param {object} defaults  {mode, hidden_labels: [names]} from the study
   * @param {object} texts     label name -> explanation (the study's label legend)
   * @param {Set<number>} present label values in this case's overlay
   */
  show(dl, entries, defaults, texts = {}, present = null) {
    const pct = Math.round(Number(dl.probability) * 100);
    const hiddenNames = new Set((defaults && defaults.hidden_labels) || []);
    const mode = OVERLAY_MODES.includes(defaults && defaults.mode) ? defaults.mode : 'outline';
    this.state = {
      mode,
      lastMode: mode === 'off' ? 'outline' : mode,
      hidden: new Set(entries.filter((e) => hiddenNames.has(e.name)).map((e) => e.value)),
      opacity: 0.5,
    };
    const children = [
      h('h3', { text: 'Deep-learning assistance' }),
      h('div', { class: 'ra-dl-prob', dataset: { testid: 'dl-probability' } }, `DL: ${pct}% metastasis`),
    ];
    this.modeSelect = null;
    this.toggle = null;
    if (dl.overlay_url) {
      this.modeSelect = h(
        'select',
        { dataset: { testid: 'overlay-mode' }, 'aria-label': 'Overlay display' },
        OVERLAY_MODES.map((m) => h('option', { value: m, selected: m === mode }, MODE_NAMES[m])),
      );
      this.modeSelect.addEventListener('change', () => this.setMode(this.modeSelect.value));
      this.toggle = h('input', { type: 'checkbox', dataset: { testid: 'overlay-toggle' }, checked: mode !== 'off' });
      this.toggle.addEventListener('change', () => this.setMode(this.toggle.checked ? this.state.lastMode : 'off'));
      this.opacityInput = h('input', {
        type: 'range',
        min: '0',
        max: '100',
        step: '5',
        value: '50',
        dataset: { testid: 'overlay-opacity' },
        'aria-label': 'Fill opacity',
      });
      this.opacityInput.addEventListener('input', () => {
        this.state.opacity = Number(this.opacityInput.value) / 100;
        this.changed();
      });
      const legend = h(
        'ul',
        { class: 'ra-legend-list', dataset: { testid: 'overlay-legend' } },
        entries.map((e) => {
          const box = h('input', {
            type: 'checkbox',
            checked: !this.state.hidden.has(e.value),
            dataset: { testid: 'overlay-label-toggle' },
            'aria-label': `Show ${e.name}`,
          });
          box.addEventListener('change', () => {
            if (box.checked) this.state.hidden.delete(e.value);
            else this.state.hidden.add(e.value);
            this.changed();
          });
          const absent = present && !present.has(e.value);
          return h(
            'li',
            { dataset: { label: e.name, color: rgbString(e.color), value: String(e.value) } },
            h('label', {}, box, h('span', { class: 'ra-swatch', style: `background: rgb(${rgbString(e.color)})` }), ` ${e.name}`),
            absent ? h('span', { class: 'ra-absent' }, ' (none in this case)') : null,
            texts[e.name] ? h('div', { class: 'ra-label-text' }, String(texts[e.name])) : null,
          );
        }),
      );
      children.push(
        h(
          'div',
          { class: 'ra-dl-row' },
          h('label', { class: 'ra-check' }, this.toggle, ' Overlay ', h('kbd', { text: 'o' })),
          h('label', { class: 'ra-opacity' }, this.modeSelect),
        ),
        h('label', { class: 'ra-opacity' }, 'Fill opacity ', this.opacityInput),
        legend,
      );
    }
    children.push(h('div', { class: 'ra-model' }, `Model: ${dl.model}`));
    this.el.replaceChildren(...children);
    this.el.hidden = false;
    return this.state;
  }

  setMode(mode) {
    if (!this.state || !OVERLAY_MODES.includes(mode)) return;
    this.state.mode = mode;
    if (mode !== 'off') this.state.lastMode = mode;
    if (this.modeSelect) this.modeSelect.value = mode;
    if (this.toggle) this.toggle.checked = mode !== 'off';
    this.changed();
  }

  toggleVisible() {
    if (!this.state) return;
    this.setMode(this.state.mode === 'off' ? this.state.lastMode : 'off');
  }

  changed() {
    this.onChange?.(this.state);
  }

  /** The overlay failed: keep the probability, drop the overlay controls. */
  dropOverlayControls(message) {
    this.el.querySelectorAll('.ra-check, .ra-opacity, .ra-legend-list').forEach((n) => n.remove());
    if (message) this.el.append(h('div', { class: 'ra-error' }, message));
    this.modeSelect = null;
    this.toggle = null;
  }
}
