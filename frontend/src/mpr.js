// MPR on demand: axial, coronal and sagittal volume viewports of one series with crosshairs. Built from the
// stack's already decoded images (no second download); torn down when the reader goes back or the item changes.

import { Enums as csEnums, cache, setVolumesForViewports, volumeLoader } from '@cornerstonejs/core';
import * as csTools from '@cornerstonejs/tools';

import { h } from './dom.js';
import { ENGINE_ID } from './viewer.js';

const { ToolGroupManager, CrosshairsTool, ZoomTool, PanTool, StackScrollTool, WindowLevelTool } = csTools;
const { MouseBindings, KeyboardBindings } = csTools.Enums;
const GROUP_ID = 'reading-mpr-tools';
const VIEWS = [
  ['axial', csEnums.OrientationAxis.AXIAL],
  ['coronal', csEnums.OrientationAxis.CORONAL],
  ['sagittal', csEnums.OrientationAxis.SAGITTAL],
];

let counter = 0;

export class MprView {
  constructor(engine) {
    this.engine = engine;
    this.el = h('div', { class: 'ra-mpr', hidden: true, dataset: { testid: 'mpr' } });
    this.volumeId = null;
    this.viewportIds = [];
    this.rendered = 0;
  }

  get open() {
    return !this.el.hidden;
  }

  group() {
    let group = ToolGroupManager.getToolGroup(GROUP_ID);
    if (!group) {
      group = ToolGroupManager.createToolGroup(GROUP_ID);
      for (const tool of [CrosshairsTool, ZoomTool, PanTool, StackScrollTool, WindowLevelTool]) group.addTool(tool.toolName);
      group.setToolActive(CrosshairsTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
      group.setToolActive(WindowLevelTool.toolName, {
        bindings: [{ mouseButton: MouseBindings.Primary, modifierKey: KeyboardBindings.Ctrl }],
      });
      group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
      group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    }
    return group;
  }

  /** Open MPR of a loaded stack; `voi` {width, level} keeps the reader's window. */
  async openFor(imageIds, role, voi) {
    this.close();
    this.el.hidden = false;
    counter += 1;
    this.volumeId = `cornerstoneStreamingImageVolume:reading-mpr-${counter}`;
    const group = this.group();
    const cells = VIEWS.map(([name]) => {
      const el = h('div', { class: 'ra-mpr-view', dataset: { testid: 'mpr-view', orientation: name } });
      this.el.append(h('div', { class: 'ra-cell' }, el, h('div', { class: 'ra-corner ra-tl' }, `${role} · ${name}`)));
      return el;
    });
    this.viewportIds = VIEWS.map(([name]) => `reading-mpr-${name}-${counter}`);
    this.rendered = 0;
    VIEWS.forEach(([, orientation], i) => {
      this.engine.enableElement({
        viewportId: this.viewportIds[i],
        type: csEnums.ViewportType.ORTHOGRAPHIC,
        element: cells[i],
        defaultOptions: { orientation, background: [0, 0, 0] },
      });
      group.addViewport(this.viewportIds[i], ENGINE_ID);
      cells[i].addEventListener(csEnums.Events.IMAGE_RENDERED, () => {
        cells[i].dataset.rendered = '1';
        this.rendered = this.el.querySelectorAll('[data-rendered="1"]').length;
      });
    });
    const volume = await volumeLoader.createAndCacheVolumeFromImages(this.volumeId, imageIds);
    if (volume.load) volume.load();
    await setVolumesForViewports(this.engine, [{ volumeId: this.volumeId }], this.viewportIds);
    if (voi) {
      for (const id of this.viewportIds) {
        const vp = this.engine.getViewport(id);
        vp.setProperties({ voiRange: { lower: voi.level - voi.width / 2, upper: voi.level + voi.width / 2 } });
      }
    }
    this.engine.renderViewports(this.viewportIds);
  }

  close() {
    if (!this.viewportIds.length && this.el.hidden) return;
    const group = ToolGroupManager.getToolGroup(GROUP_ID);
    for (const id of this.viewportIds) {
      try {
        group?.removeViewports(ENGINE_ID, id);
        this.engine.disableElement(id);
      } catch {
        // already gone
      }
    }
    this.viewportIds = [];
    this.el.replaceChildren();
    this.el.hidden = true;
    this.rendered = 0;
    if (this.volumeId) {
      try {
        cache.removeVolumeLoadObject(this.volumeId);
      } catch {
        // not cached
      }
      this.volumeId = null;
    }
  }
}
