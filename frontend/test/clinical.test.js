import { describe, expect, it } from 'vitest';

import { clinicalEntries } from '../src/clinical.js';

describe('clinicalEntries', () => {
  it('lists the covariates as text pairs in the order the server sent them', () => {
    const clinical = {
      covariates: [
        { name: 'age', label: 'Age', value: '61 years' },
        { name: 'sex', label: 'Sex', value: 'female' },
      ],
      text: 'x',
    };
    expect(clinicalEntries(clinical)).toEqual([
      ['Age', '61 years'],
      ['Sex', 'female'],
    ]);
  });

  it('keeps markup as text and skips malformed entries', () => {
    const clinical = { covariates: [{ label: '<b>Age</b>', value: 61 }, null, 'age', { label: 'CEA' }] };
    expect(clinicalEntries(clinical)).toEqual([['<b>Age</b>', '61']]);
    expect(clinicalEntries(undefined)).toEqual([]);
    expect(clinicalEntries({ covariates: 'age' })).toEqual([]);
  });
});
