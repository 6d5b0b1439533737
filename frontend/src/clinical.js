// Clinical information from the case manifest (covariates and a short history): shown only where the server sent
// `clinical`, i.e. where the study shows it. Every value is set as text (textContent), never as HTML: the cells
// come from a spreadsheet and may hold markup.

import { h } from './dom.js';

/** The item's covariates as [label, value] text pairs, skipping anything that is not a {label, value} entry. */
export function clinicalEntries(clinical) {
  const list = clinical && Array.isArray(clinical.covariates) ? clinical.covariates : [];
  return list
    .filter((c) => c && typeof c === 'object' && c.label !== undefined && c.value !== undefined)
    .map((c) => [String(c.label), String(c.value)]);
}

export class ClinicalPanel {
  constructor() {
    this.el = h('section', { class: 'ra-panel ra-clinical', dataset: { testid: 'case-clinical' }, hidden: true });
  }

  hide() {
    this.el.hidden = true;
    this.el.replaceChildren();
  }

  /** @param {object|undefined} clinical the item's `clinical` ({covariates: [{name, label, value}], text}) */
  show(clinical) {
    const entries = clinicalEntries(clinical);
    const text = clinical && typeof clinical.text === 'string' ? clinical.text : '';
    if (!clinical || (!entries.length && !text)) {
      this.hide();
      return;
    }
    this.el.replaceChildren(
      h('h3', { text: 'Clinical information' }),
      entries.length
        ? h('dl', { class: 'ra-clinical-list' }, entries.flatMap(([label, value]) => [h('dt', { text: label }), h('dd', { text: value })]))
        : null,
      text ? h('p', { class: 'ra-clinical-text', dataset: { testid: 'case-text' }, text }) : null,
    );
    this.el.hidden = false;
  }
}
