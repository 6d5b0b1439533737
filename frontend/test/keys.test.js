import { describe, expect, it } from 'vitest';

import { KEY_HELP, keyCommand } from '../src/keys.js';

describe('keyCommand', () => {
  it('never takes Tab, so keyboard readers can leave the viewer', () => {
    expect(keyCommand({ key: 'Tab' }, { inViewer: true })).toBeNull();
    expect(keyCommand({ key: 'Tab', shiftKey: true }, { inViewer: true })).toBeNull();
  });

  it('moves to the rating with Enter from the viewer only', () => {
    expect(keyCommand({ key: 'Enter' }, { inViewer: true })).toEqual({ command: 'focus-rating' });
    expect(keyCommand({ key: 'Enter' }, { inViewer: false })).toBeNull();
  });

  it('scrolls with arrows and pages, except on a range input where the arrows move the rating', () => {
    expect(keyCommand({ key: 'ArrowDown' })).toEqual({ command: 'scroll-by', arg: 1 });
    expect(keyCommand({ key: 'PageUp' })).toEqual({ command: 'scroll-by', arg: -5 });
    expect(keyCommand({ key: 'End' })).toEqual({ command: 'scroll-to', arg: -1 });
    expect(keyCommand({ key: 'ArrowDown' }, { onRange: true })).toBeNull();
  });

  it('ignores keys while typing and with modifiers', () => {
    expect(keyCommand({ key: 'o' }, { textEntry: true })).toBeNull();
    expect(keyCommand({ key: 'r', ctrlKey: true })).toBeNull();
    expect(keyCommand({ key: 'l', metaKey: true })).toBeNull();
  });

  it('maps letters case-insensitively and presets only where the study defines them', () => {
    expect(keyCommand({ key: 'L' })).toEqual({ command: 'tool-length' });
    expect(keyCommand({ key: 'e' })).toEqual({ command: 'tool-ellipse' });
    expect(keyCommand({ key: 'x' })).toEqual({ command: 'toggle-mpr' });
    expect(keyCommand({ key: '2' }, { presetKeys: ['1', '2'] })).toEqual({ command: 'preset', arg: '2' });
    expect(keyCommand({ key: '7' }, { presetKeys: ['1', '2'] })).toBeNull();
    expect(keyCommand({ key: 'q' })).toBeNull();
  });

  it('documents every letter it maps', () => {
    const help = KEY_HELP.map(([keys, what]) => `${keys} ${what}`).join(' ');
    for (const letter of ['f', 'r', 'j', 'm', 'o', 'l', 'e', 'w', 'c', 'x']) {
      expect(keyCommand({ key: letter })).not.toBeNull();
      expect(help).toMatch(new RegExp(`(^|[^a-z])${letter}([^a-z]|$)`));
    }
  });
});
