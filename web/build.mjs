// Bundles the web app into dist/: index.html, assets/app.js, assets/app.css.
// Usage: node build.mjs [--watch]
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');
const watch = process.argv.includes('--watch');

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'assets'), { recursive: true });
copyFileSync(join(root, 'index.html'), join(dist, 'index.html'));

const options = {
  entryPoints: { app: join(root, 'src', 'main.ts') },
  bundle: true,
  format: 'esm',
  splitting: true, // deck.gl (3D view) goes into a chunk loaded on first use
  chunkNames: '[name]-[hash]',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  outdir: join(dist, 'assets'),
  minify: !watch,
  sourcemap: watch ? 'inline' : false,
  legalComments: 'none',
  logLevel: 'info',
  loader: { '.css': 'css' },
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
