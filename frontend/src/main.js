// Entry of the reading page bundle (loaded as <script type="module"> in <head>).
import './style.css';
import { ReadingApp } from './session.js';

function boot() {
  const root = document.getElementById('reading-app');
  if (!root || root.dataset.booted) return;
  root.dataset.booted = '1';
  new ReadingApp(root).start();
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', boot, { once: true });
} else {
  boot();
}
