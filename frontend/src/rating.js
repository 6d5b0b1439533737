// The rating panel: the study's question and scale labels, slider + typed number (with a message for values
// off the scale), "not assessable" with a reason, a free comment, and submit. A submitted rating is final.

import { h } from './dom.js';

/** Parse a typed rating: {value} for a whole number on the scale, {error} otherwise, {} for an empty field. */
export function parseRating(raw, scale) {
  const text = String(raw ?? '').trim();
  if (text === '') return {};
  const rule = `Enter a whole number from ${scale.min} to ${scale.max}.`;
  if (!/^-?\d+(\.\d+)?$/.test(text)) return { error: rule };
  const value = Number(text);
  if (!Number.isInteger(value)) return { error: `${text} is not a whole number. ${rule}` };
  if (value < scale.min || value > scale.max) return { error: `${text} is off the scale. ${rule}` };
  return { value };
}

export const COMMENT_MAX = 2000;

export class RatingPanel {
  constructor({ onSubmit, onChange }) {
    this.onChange = onChange;
    this.rating = null;
    this.scale = { min: 0, max: 100 };
    this.slider = h('input', { type: 'range', class: 'ra-slider unset', dataset: { testid: 'rating-slider' }, 'aria-label': 'Rating', disabled: true });
    this.valueEl = h('output', { class: 'ra-value', dataset: { testid: 'rating-value' } }, '–');
    this.numberInput = h('input', {
      type: 'text',
      class: 'ra-number',
      dataset: { testid: 'rating-number' },
      'aria-label': 'Rating (type a number)',
      inputmode: 'numeric',
      placeholder: '–',
      disabled: true,
    });
    this.numberError = h('div', { class: 'ra-number-error', dataset: { testid: 'rating-error' }, role: 'alert', hidden: true });
    this.question = h('p', { class: 'ra-question', dataset: { testid: 'question' } });
    this.legendLow = h('span', { class: 'ra-legend-low' });
    this.legendHigh = h('span', { class: 'ra-legend-high' });
    this.naBox = h('input', { type: 'checkbox', dataset: { testid: 'not-assessable' }, disabled: true });
    this.naReason = h('select', { dataset: { testid: 'not-assessable-reason' }, 'aria-label': 'Reason', hidden: true });
    this.comment = h('textarea', {
      dataset: { testid: 'read-comment' },
      rows: '1',
      maxlength: String(COMMENT_MAX),
      placeholder: 'Comment (optional)',
      'aria-label': 'Comment',
      disabled: true,
    });
    this.submitBtn = h('button', { type: 'submit', class: 'ra-submit', dataset: { testid: 'submit-read' }, disabled: true }, 'Submit rating');
    this.saveStatus = h('div', { class: 'ra-save', dataset: { testid: 'save-status' }, role: 'status', 'aria-live': 'polite' });
    this.el = h(
      'form',
      { class: 'ra-panel ra-rating', novalidate: true },
      h('h3', { text: 'Your rating' }),
      this.question,
      h('div', { class: 'ra-slider-row' }, this.slider),
      h('div', { class: 'ra-legend' }, this.legendLow, this.legendHigh),
      h('div', { class: 'ra-value-row' }, h('span', {}, 'Rating: '), this.valueEl, h('label', { class: 'ra-number-label' }, 'or type ', this.numberInput)),
      this.numberError,
      h('div', { class: 'ra-na-row' }, h('label', { class: 'ra-check' }, this.naBox, ' Not assessable'), this.naReason),
      this.comment,
      this.submitBtn,
      h('p', { class: 'ra-final', dataset: { testid: 'rating-final-note' } }, 'A submitted rating is final: it cannot be changed afterwards.'),
      this.saveStatus,
    );
    this.el.addEventListener('submit', (e) => {
      e.preventDefault();
      onSubmit();
    });
    const fromSlider = () => this.setRating(Number(this.slider.value), 'slider');
    this.slider.addEventListener('input', fromSlider);
    this.slider.addEventListener('change', fromSlider);
    // A click on the thumb's resting place fires no input event: count the release as setting the value.
    this.slider.addEventListener('pointerup', fromSlider);
    this.slider.addEventListener('keyup', (e) => {
      if (['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End', 'PageUp', 'PageDown'].includes(e.key)) fromSlider();
    });
    this.numberInput.addEventListener('input', () => this.onNumberInput());
    this.numberInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') {
        e.preventDefault();
        if (!this.submitBtn.disabled) onSubmit();
      }
    });
    this.naBox.addEventListener('change', () => this.refresh());
    this.naReason.addEventListener('change', () => this.refresh());
  }

  reset(item, previousSaved) {
    const scale = item.rating_scale || { min: 0, max: 100 };
    this.scale = { min: Number(scale.min ?? 0), max: Number(scale.max ?? 100) };
    this.rating = null;
    this.slider.min = String(this.scale.min);
    this.slider.max = String(this.scale.max);
    this.slider.step = '1';
    // The range input needs some value; it stays invisible ("unset") until the reader sets one: no anchoring.
    this.slider.value = String(Math.round((this.scale.min + this.scale.max) / 2));
    this.slider.classList.add('unset');
    this.slider.setAttribute('aria-valuetext', 'not set');
    this.numberInput.value = '';
    this.numberInput.classList.remove('invalid');
    this.numberError.hidden = true;
    this.valueEl.textContent = '–';
    this.valueEl.classList.add('unset');
    this.question.textContent = item.question || 'How likely is the marked lesion a metastasis?';
    this.legendLow.textContent = `${this.scale.min} = ${scale.low || ''}`;
    this.legendHigh.textContent = `${this.scale.max} = ${scale.high || ''}`;
    this.naBox.checked = false;
    const reasons = item.not_assessable_reasons || [];
    this.naReason.replaceChildren(h('option', { value: '' }, 'Reason…'), ...reasons.map((r) => h('option', { value: r }, r)));
    this.naBox.closest('label').hidden = reasons.length === 0;
    this.comment.value = '';
    if (previousSaved) this.setSave('Previous rating saved', 'ok-prev');
    else this.setSave('', 'none');
    this.refresh();
  }

  get notAssessable() {
    return this.naBox.checked;
  }

  setEnabled(on) {
    this.enabled = on;
    for (const input of [this.slider, this.numberInput, this.naBox, this.comment, this.naReason]) input.disabled = !on;
    this.refresh();
  }

  /** Submit is possible with a rating, or with "not assessable" and a reason. */
  ready() {
    if (this.notAssessable) return this.naReason.value !== '';
    return this.rating !== null;
  }

  refresh() {
    const na = this.notAssessable;
    this.naReason.hidden = !na;
    this.slider.disabled = !this.enabled || na;
    this.numberInput.disabled = !this.enabled || na;
    this.el.classList.toggle('not-assessable', na);
    this.submitBtn.disabled = !this.enabled || !this.ready();
    this.onChange?.();
  }

  setRating(value, source) {
    if (!this.enabled || this.notAssessable) return;
    if (!Number.isInteger(value) || value < this.scale.min || value > this.scale.max) return;
    this.rating = value;
    this.slider.classList.remove('unset');
    if (source !== 'slider') this.slider.value = String(value);
    if (source !== 'number') this.numberInput.value = String(value);
    this.numberInput.classList.remove('invalid');
    this.numberError.hidden = true;
    this.valueEl.textContent = String(value);
    this.valueEl.classList.remove('unset');
    this.slider.removeAttribute('aria-valuetext');
    if (['error', 'ok-prev'].includes(this.saveStatus.dataset.state)) this.setSave('', 'none');
    this.refresh();
  }

  clearRating() {
    this.rating = null;
    this.slider.classList.add('unset');
    this.slider.setAttribute('aria-valuetext', 'not set');
    this.valueEl.textContent = '–';
    this.valueEl.classList.add('unset');
    this.refresh();
  }

  onNumberInput() {
    const parsed = parseRating(this.numberInput.value, this.scale);
    if (parsed.value !== undefined) {
      this.setRating(parsed.value, 'number');
      return;
    }
    this.numberInput.classList.toggle('invalid', !!parsed.error);
    this.numberError.textContent = parsed.error || '';
    this.numberError.hidden = !parsed.error;
    this.clearRating();
  }

  /** The read's answer for the submit body. */
  answer() {
    const comment = this.comment.value.slice(0, COMMENT_MAX);
    if (this.notAssessable) {
      return { rating: null, not_assessable: true, not_assessable_reason: this.naReason.value, comment };
    }
    return { rating: this.rating, not_assessable: false, not_assessable_reason: '', comment };
  }

  focus() {
    (this.notAssessable ? this.naReason : this.slider).focus();
  }

  setSave(text, kind) {
    this.saveStatus.textContent = text;
    this.saveStatus.className = `ra-save ${kind}`;
    this.saveStatus.dataset.state = kind;
    if (text) this.showStatus();
  }

  /**
   * Practice reads: the truth after the rating, until the reader presses "Next case".
   * @returns {Promise<void>} resolved on the click
   */
  showFeedback(feedback, answer) {
    const given = answer.not_assessable ? `not assessable (${answer.not_assessable_reason})` : `${answer.rating}`;
    return new Promise((resolve) => {
      const next = h('button', { type: 'button', dataset: { testid: 'practice-next' } }, 'Next case');
      const box = h(
        'div',
        { class: 'ra-feedback', dataset: { testid: 'practice-feedback', truth: String(feedback.truth || '') }, role: 'status' },
        h('strong', {}, `Truth: ${feedback.truth_label || feedback.truth}`),
        feedback.truth_source ? ` (${feedback.truth_source})` : '',
        h('div', {}, `Your rating: ${given}`),
        next,
      );
      next.addEventListener('click', () => {
        box.remove();
        resolve();
      });
      this.saveStatus.after(box);
      box.scrollIntoView?.({ block: 'nearest' });
      next.focus();
    });
  }

  /** On short screens the side panel scrolls: a message the reader must see is brought into view. */
  showStatus() {
    if (this.saveStatus.textContent) this.saveStatus.scrollIntoView?.({ block: 'nearest' });
  }
}
