#!/usr/bin/env node
// The init service from Node (>= 20), with the built-in fetch and no dependencies.
//
//   INITSVC_URL=http://127.0.0.1:8000 node examples/node_fetch.mjs [--url URL] [--json]
//
// Fetches four tensors (float32, float16, bfloat16, float64; by POST and by GET), parses the
// safetensors answer (8-byte little-endian header length, JSON header, raw little-endian data)
// into typed arrays, and decodes float16 and bfloat16 to Float32Array exactly (every float16 and
// bfloat16 value is a float32 value). Prints shape and stats; --json prints one JSON object per
// tensor, with the sha256 of the decoded values' bytes.
import { createHash } from 'node:crypto';

// torch.manual_seed(seed); torch.nn.init.<scheme>_(torch.empty(shape, dtype=dtype), **params)
const RECIPES = [
  { name: 'fc1.weight', shape: [256, 784], init: { scheme: 'kaiming_uniform', a: 2.23606797749979 },
    dtype: 'float32', device: 'cpu', seed: 0 },
  { name: 'embed', shape: [64, 32], init: { scheme: 'normal', std: 0.02 }, dtype: 'float16', device: 'cpu', seed: 1 },
  { name: 'attn.qkv', shape: [96, 32], init: { scheme: 'trunc_normal', std: 0.02 },
    dtype: 'bfloat16', device: 'cpu', seed: 2 },
  { name: 'head', shape: [10, 64], init: { scheme: 'xavier_normal', gain: 1.0 }, dtype: 'float64', device: 'cpu', seed: 3 },
];

function parseArgs(argv) {
  const args = { url: process.env.INITSVC_URL || 'http://127.0.0.1:8000', json: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--url') args.url = argv[++i];
    else if (argv[i] === '--json') args.json = true;
    else throw new Error(`unknown argument ${argv[i]}; usage: node_fetch.mjs [--url URL] [--json]`);
  }
  args.url = args.url.replace(/\/+$/, '');
  return args;
}

async function fetchTensor(url, recipe, useGet) {
  const headers = { accept: 'application/octet-stream' };
  if (process.env.INITSVC_API_KEY) headers.authorization = `Bearer ${process.env.INITSVC_API_KEY}`;
  let response;
  if (useGet) { // the same recipe as a URL: same bytes
    const query = new URLSearchParams({ shape: recipe.shape.join(','), ...recipe.init, dtype: recipe.dtype,
      device: recipe.device, seed: String(recipe.seed), name: recipe.name });
    response = await fetch(`${url}/v1/tensor?${query}`, { headers });
  } else {
    response = await fetch(`${url}/v1/tensor`, { method: 'POST', body: JSON.stringify(recipe),
      headers: { ...headers, 'content-type': 'application/json' } });
  }
  if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
  return new Uint8Array(await response.arrayBuffer());
}

// float16 bits -> number, exactly: sign, 5-bit exponent (bias 15), 10-bit fraction.
function halfToNumber(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

// Typed arrays over the data (copied to an aligned buffer; typed arrays use the host's byte order,
// little-endian on every platform Node runs on); float16/bfloat16 become Float32Array.
function decode(dtype, bytes) {
  const aligned = bytes.slice().buffer; // a fresh ArrayBuffer, aligned for any element size
  switch (dtype) {
    case 'F64': return new Float64Array(aligned);
    case 'F32': return new Float32Array(aligned);
    case 'F16': return Float32Array.from(new Uint16Array(aligned), halfToNumber);
    case 'BF16': { // a bfloat16 is the top 16 bits of a float32
      const halves = new Uint16Array(aligned);
      const bits = new Uint32Array(halves.length);
      for (let i = 0; i < halves.length; i++) bits[i] = halves[i] << 16; // wraps mod 2^32, as wanted
      return new Float32Array(bits.buffer);
    }
    default: throw new Error(`dtype ${dtype} is not handled by this example`);
  }
}

function parseSafetensors(data) {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(data.subarray(8, 8 + n)));
  const metadata = {};
  for (const [key, value] of Object.entries(header.__metadata__ || {})) {
    metadata[key] = key === 'format' ? value : JSON.parse(value);
  }
  delete header.__metadata__;
  const tensors = {};
  for (const [name, entry] of Object.entries(header)) {
    const [begin, end] = entry.data_offsets;
    tensors[name] = { dtype: entry.dtype, shape: entry.shape, values: decode(entry.dtype, data.subarray(8 + n + begin, 8 + n + end)) };
  }
  return { metadata, tensors };
}

function describe(values) {
  let sum = 0, min = Infinity, max = -Infinity;
  for (const v of values) { sum += v; if (v < min) min = v; if (v > max) max = v; }
  const mean = sum / values.length;
  let squares = 0;
  for (const v of values) squares += (v - mean) ** 2;
  return { mean, std: Math.sqrt(squares / (values.length - 1)), min, max };
}

const args = parseArgs(process.argv.slice(2));
for (const [i, recipe] of RECIPES.entries()) {
  const { metadata, tensors } = parseSafetensors(await fetchTensor(args.url, recipe, i % 2 === 1));
  const { shape, values } = tensors[recipe.name];
  const stats = describe(values);
  const sha256 = createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex');
  if (args.json) {
    console.log(JSON.stringify({ name: recipe.name, dtype: recipe.dtype, shape, request: metadata.request,
      values: values.constructor.name, ...stats, server_std: metadata.stats[recipe.name].std, sha256 }));
  } else {
    console.log(`${recipe.name.padEnd(12)} ${recipe.dtype.padEnd(9)} [${shape.join(', ')}]`.padEnd(40) +
      ` mean ${stats.mean.toFixed(6)}  std ${stats.std.toFixed(6)} (server ${metadata.stats[recipe.name].std.toFixed(6)})` +
      `  min ${stats.min.toFixed(6)}  max ${stats.max.toFixed(6)}  seed ${metadata.request.seed}`);
  }
}
