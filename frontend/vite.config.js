// Vite 8 (rolldown) build of the reading page. Output: frontend/dist, served by Django as a static-files folder.
// - manifest: true -> dist/.vite/manifest.json maps "src/main.js" to the hashed bundle (read by {% vite_entry %}).
// - base './' -> the decode worker and the wasm codecs are referenced relative to the bundle, so they load from
//   the page's own origin under Django's static URL (a worker from another origin fails with SecurityError).
// - one main-thread ES module (code splitting off); workers and wasm codecs stay separate hashed assets,
//   the codecs fetched only for the transfer syntax that needs them.
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  publicDir: false,
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    manifest: true,
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 6000,
    assetsInlineLimit: 0,
    rolldownOptions: {
      input: 'src/main.js',
      output: {
        codeSplitting: false,
      },
    },
  },
  worker: {
    format: 'es',
  },
});
