// Compresses the site's WebAssembly, JavaScript and CSS as hard as gzip and brotli go, beside
// them (`<file>.gz`, `<file>.br`), replacing the quick ones `cargo leptos build --precompress`
// writes: the server sends these to browsers that accept them. Node's own zlib, so no extra tool.
//
//   node scripts/lib/precompress.mjs target/site/pkg
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node scripts/lib/precompress.mjs <directory>");
  process.exit(2);
}
for (const name of readdirSync(dir)) {
  if (!/\.(wasm|js|css)$/.test(name)) continue;
  const path = join(dir, name);
  const data = readFileSync(path);
  writeFileSync(`${path}.gz`, gzipSync(data, { level: 9 }));
  writeFileSync(
    `${path}.br`,
    brotliCompressSync(data, {
      params: {
        [constants.BROTLI_PARAM_QUALITY]: 11,
        [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
      },
    }),
  );
}
