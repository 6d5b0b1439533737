// Patient orientation letters for a direction in DICOM patient coordinates (LPS: +x left, +y posterior, +z head).

const AXES = [
  ['R', 'L'],
  ['A', 'P'],
  ['I', 'S'],
];

/** Letters of the main axes a direction points along, strongest first (e.g. "L", "LP" for an oblique). */
export function orientationLabel(v) {
  const norm = Math.hypot(v[0], v[1], v[2]);
  if (!norm) return '';
  const parts = [0, 1, 2]
    .map((i) => ({ i, c: v[i] / norm }))
    .filter((p) => Math.abs(p.c) > 0.3)
    .sort((a, b) => Math.abs(b.c) - Math.abs(a.c));
  return parts.map((p) => AXES[p.i][p.c > 0 ? 1 : 0]).join('');
}

/** The four edge labels of a view from its screen-right and screen-down directions in patient space. */
export function edgeLabels(right, down) {
  const neg = (v) => v.map((x) => -x);
  return {
    left: orientationLabel(neg(right)),
    right: orientationLabel(right),
    top: orientationLabel(neg(down)),
    bottom: orientationLabel(down),
  };
}

/** Index of the slice whose position (along a shared normal) is nearest `target`; positions in mm, any order. */
export function nearestSlice(positions, target) {
  let best = 0;
  let bestDistance = Infinity;
  positions.forEach((p, k) => {
    const d = Math.abs(p - target);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  });
  return best;
}
