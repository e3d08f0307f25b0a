#!/usr/bin/env node
// portable-v1 weights in plain Node (>= 20, no dependencies): the same bits as the service's
// rng "portable-v1" and as service.portable.generate. The algorithm is docs/portable-v1.md.
//
//   node examples/portable.js tensor --recipe '{"scheme":"kaiming_uniform"}' --shape 256,784 \
//        --seed 0 [--tid 0] [--dtype float32|float64|float16|bfloat16] [--slice 0:128,:] [-o w.bin]
//     writes the raw little-endian values (float16/bfloat16 as 16-bit patterns), row-major
//   node examples/portable.js digest --kind normal|uniform --seed 0 [--tid 0] [--start 0] [--count 1048576]
//     prints the sha256 of float32 normal(w) / u(w) for elements start..start+count-1
//   node examples/portable.js batch < cases.jsonl
//     one JSON case a line ({recipe, shape, seed (decimal string), tid, dtype, slice}); prints
//     the sha256 of each tensor's bytes, or "error: <message>"
'use strict';
const crypto = require('crypto');
const fs = require('fs');

// ---- Philox4x32-10 (Random123) -------------------------------------------------------------
const M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;
function mulhi(a, b) { // high word of the 64-bit product of two uint32s, exact in doubles
  const a0 = a & 0xffff, a1 = a >>> 16, b0 = b & 0xffff, b1 = b >>> 16;
  const mid = a1 * b0 + a0 * b1 + Math.floor((a0 * b0) / 65536);
  return (a1 * b1 + Math.floor(mid / 65536)) >>> 0;
}
function philox(c0, c1, c2, c3, k0, k1) {
  for (let r = 0; r < 10; r++) {
    if (r > 0) { k0 = (k0 + W0) >>> 0; k1 = (k1 + W1) >>> 0; }
    const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}
function stream(seed, tid) { // word(i, k) of element i (a Number < 2^53), attempt k
  const k0 = Number(seed & 0xffffffffn), k1 = Number(seed >> 32n);
  let lastJ = -1, lastK = -1, last = null;
  return (i, k) => {
    const j = Math.floor(i / 4);
    if (j !== lastJ || k !== lastK) {
      last = philox(j % 4294967296, Math.floor(j / 4294967296), tid, k, k0, k1);
      lastJ = j; lastK = k;
    }
    return last[i % 4];
  };
}

// ---- transforms: uniform, AS241 normal with its own ln ----------------------------------------
const A = [3.387132872796366608, 133.14166789178437745, 1971.5909503065514427, 13731.693765509461125,
  45921.953931549871457, 67265.770927008700853, 33430.575583588128105, 2509.0809287301226727];
const B = [1.0, 42.313330701600911252, 687.1870074920579083, 5394.1960214247511077,
  21213.794301586595867, 39307.89580009271061, 28729.085735721942674, 5226.495278852854561];
const C = [1.42343711074968357734, 4.6303378461565452959, 5.7694972214606914055,
  3.64784832476320460504, 1.27045825245236838258, 0.24178072517745061177,
  0.0227238449892691845833, 7.7454501427834140764e-4];
const D = [1.0, 2.05319162663775882187, 1.6763848301838038494, 0.68976733498510000455,
  0.14810397642748007459, 0.0151986665636164571966, 5.475938084995344946e-4,
  1.05075007164441684324e-9];
const G = Array.from({ length: 10 }, (_, k) => 2 / (2 * k + 1));
const LN2 = 0.6931471805599453, SQRT2 = 1.4142135623730951; // 0x3FE62E42FEFA39EF, 0x3FF6A09E667F3BCD
const POW2 = Array.from({ length: 35 }, (_, e) => 2 ** e);
function horner(c, r) { let acc = c[c.length - 1]; for (let i = c.length - 2; i >= 0; i--) acc = acc * r + c[i]; return acc; }
function logRatio(m) { // ln(m * 2^-33) for an odd integer 1 <= m < 2^33
  const hi = Math.floor(m / 4294967296);
  let e = hi ? 63 - Math.clz32(hi) : 31 - Math.clz32(m);
  let f = m / POW2[e]; // exact
  if (f > SQRT2) { f = f * 0.5; e = e + 1; }
  const s = (f - 1) / (f + 1);
  return (e - 33) * LN2 + horner(G, s * s) * s;
}
const uniform = (w) => (w >>> 8) * 2 ** -24;
function normal(w) {
  const n = 2 * w + 1, q = n * 2 ** -33 - 0.5;
  if (Math.abs(q) <= 0.425) { const r = 0.180625 - q * q; return (q * horner(A, r)) / horner(B, r); }
  const r = Math.sqrt(-logRatio(q < 0 ? n : 2 ** 33 - n)) - 1.6;
  const x = horner(C, r) / horner(D, r);
  return q < 0 ? -x : x;
}

// ---- recipes: torch's formulas in torch's order ---------------------------------------------
const GAINS = { linear: 1, identity: 1, conv1d: 1, conv2d: 1, conv3d: 1, conv_transpose1d: 1,
  conv_transpose2d: 1, conv_transpose3d: 1, sigmoid: 1, tanh: 5 / 3, relu: Math.sqrt(2), selu: 3 / 4 };
function gainOf(nl, param) {
  if (nl === 'leaky_relu') { const s = param == null ? 0.01 : param; return Math.sqrt(2 / (1 + s * s)); }
  if (!(nl in GAINS)) throw new Error(`unknown nonlinearity ${nl}`);
  return GAINS[nl];
}
function erfc(x) { // Numerical Recipes erfcc (|rel err| < 1.2e-7): only for the 1e-4 window rule
  const z = Math.abs(x), t = 1 / (1 + 0.5 * z);
  const y = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? y : 2 - y;
}
function plan(recipe, shape) {
  const p = { ...recipe }, s = p.scheme, fans = () => {
    const rf = shape.slice(2).reduce((a, b) => a * b, 1);
    return { fin: shape[1] * rf, fout: shape[0] * rf };
  };
  const trunc = (mean, std, a, b, alpha, beta) => {
    const prob = 1 - 0.5 * (erfc(-alpha / Math.SQRT2) + erfc(beta / Math.SQRT2));
    if (!(prob >= 1e-4)) throw new Error(`${s} window [a=${a}, b=${b}] has probability ${prob.toExponential(3)} < 1e-4`);
    return { family: 'truncated', mean, std, alpha, beta };
  };
  const vs = (scale, mode, dist) => {
    const { fin, fout } = fans();
    const v = scale / (mode === 'fan_in' ? fin : mode === 'fan_out' ? fout : (fin + fout) / 2);
    if (dist === 'truncated_normal') return trunc(0, Math.sqrt(v) / 0.87962566103423978, -2, 2, -2, 2);
    if (dist === 'normal') return { family: 'normal', mean: 0, std: Math.sqrt(v) };
    const bound = Math.sqrt(3 * v); return { family: 'uniform', low: -bound, high: bound };
  };
  const d = (k, v) => (p[k] === undefined ? v : p[k]);
  switch (s) {
    case 'uniform': return { family: 'uniform', low: d('a', 0), high: d('b', 1) };
    case 'normal': return { family: 'normal', mean: d('mean', 0), std: d('std', 1) };
    case 'trunc_normal': { const [m, sd, a, b] = [d('mean', 0), d('std', 1), d('a', -2), d('b', 2)];
      return trunc(m, sd, a, b, (a - m) / sd, (b - m) / sd); }
    case 'trunc_normal_tf': { const [a, b] = [d('a', -2), d('b', 2)]; return trunc(d('mean', 0), d('std', 1), a, b, a, b); }
    case 'constant': case 'ones': case 'zeros':
      return { family: 'constant', value: s === 'ones' ? 1 : s === 'zeros' ? 0 : p.val };
    case 'eye': case 'dirac': return { family: s, groups: d('groups', 1) };
    case 'xavier_uniform': case 'xavier_normal': {
      const g = d('gain', 1), gain = typeof g === 'object' ? gainOf(g.nonlinearity, g.param) : g;
      const { fin, fout } = fans(), std = gain * Math.sqrt(2 / (fin + fout));
      if (s === 'xavier_normal') return { family: 'normal', mean: 0, std };
      const bound = Math.sqrt(3) * std; return { family: 'uniform', low: -bound, high: bound };
    }
    case 'kaiming_uniform': case 'kaiming_normal': {
      const { fin, fout } = fans(), fan = d('mode', 'fan_in') === 'fan_in' ? fin : fout;
      const std = gainOf(d('nonlinearity', 'leaky_relu'), d('a', 0)) / Math.sqrt(fan);
      if (s === 'kaiming_normal') return { family: 'normal', mean: 0, std };
      const bound = Math.sqrt(3) * std; return { family: 'uniform', low: -bound, high: bound };
    }
    case 'sparse': return { family: 'sparse', mean: 0, std: d('std', 0.01), zeros: Math.ceil(p.sparsity * shape[0]) };
    case 'variance_scaling': return vs(d('scale', 1), d('mode', 'fan_in'), d('distribution', 'truncated_normal'));
    case 'lecun_uniform': return vs(1, 'fan_in', 'uniform');
    case 'lecun_normal': return vs(1, 'fan_in', 'truncated_normal');
    default: throw new Error(`scheme ${s} has no portable-v1 form`);
  }
}

// ---- tensors --------------------------------------------------------------------------------
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
function f16bits(x) { // float32 value -> float16 bits, nearest even
  f32[0] = x; const b = u32[0], sign = (b >>> 16) & 0x8000, exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff; const e = exp - 112;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  if (e >= 31) return sign | 0x7c00;
  const shift = e <= 0 ? 14 - e : 13;
  if (shift > 24) return sign;
  if (e <= 0) mant |= 0x800000;
  let h = (e <= 0 ? 0 : e << 10) | (mant >>> shift);
  const rem = mant % 2 ** shift, half = 2 ** (shift - 1);
  if (rem > half || (rem === half && (h & 1))) h++;
  return sign | h;
}
function bf16bits(x) { f32[0] = x; const b = u32[0]; return Number.isNaN(x) ? 0x7fc0 : Math.floor((b + 0x7fff + ((b >>> 16) & 1)) / 65536); }
const WRITE = {
  float64: [8, (buf, o, v) => buf.writeDoubleLE(v, o)],
  float32: [4, (buf, o, v) => buf.writeFloatLE(Math.fround(v), o)],
  float16: [2, (buf, o, v) => buf.writeUInt16LE(f16bits(Math.fround(v)), o)],
  bfloat16: [2, (buf, o, v) => buf.writeUInt16LE(bf16bits(Math.fround(v)), o)],
};
function makeTensor(recipe, shape, seed, tid, dtype, slice) {
  const P = plan(recipe, shape), word = stream(BigInt(seed), tid), [size, write] = WRITE[dtype];
  const bounds = shape.map((n, i) => (slice && slice[i]) || [0, n]), ext = bounds.map(([a, b]) => b - a);
  const count = ext.reduce((a, b) => a * b, 1), buf = Buffer.alloc(count * size);
  if (count === 0) return buf;
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  let zero = null; // sparse: zero[c] = Set of rows, for the slice's columns
  if (P.family === 'sparse') {
    zero = {};
    for (let c = bounds[1][0]; c < bounds[1][1]; c++) {
      const keys = Array.from({ length: shape[0] }, (_, r) => [word(r * shape[1] + c, 1), r]);
      keys.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
      zero[c] = new Set(keys.slice(0, P.zeros).map((x) => x[1]));
    }
  }
  const idx = bounds.map(([a]) => a);
  for (let o = 0; o < count; o++) {
    const i = idx.reduce((acc, v, d) => acc + v * strides[d], 0);
    let v;
    if (P.family === 'uniform') v = P.low + (P.high - P.low) * uniform(word(i, 0));
    else if (P.family === 'normal' || P.family === 'sparse') v = P.mean + P.std * normal(word(i, 0));
    else if (P.family === 'truncated') {
      let x, k = 0;
      do { x = normal(word(i, k++)); } while (!(x >= P.alpha && x <= P.beta));
      v = P.mean + P.std * x;
    } else if (P.family === 'constant') v = P.value;
    else if (P.family === 'eye') v = idx[0] === idx[1] ? 1 : 0;
    else { // dirac
      const per = shape[0] / P.groups, d = idx[0] % per;
      v = d === idx[1] && d < shape[1] && idx.slice(2).every((x, j) => x === Math.floor(shape[j + 2] / 2)) ? 1 : 0;
    }
    if (zero && zero[idx[1]].has(idx[0])) v = 0;
    write(buf, o * size, v);
    for (let d = idx.length - 1; d >= 0; d--) { if (++idx[d] < bounds[d][1]) break; idx[d] = bounds[d][0]; }
  }
  return buf;
}

// ---- CLI ------------------------------------------------------------------------------------
function digest(kind, seed, tid, start, count) {
  const word = stream(BigInt(seed), tid), buf = Buffer.alloc(4 * count);
  for (let n = 0; n < count; n++) buf.writeFloatLE(Math.fround((kind === 'uniform' ? uniform : normal)(word(start + n, 0))), 4 * n);
  return crypto.createHash('sha256').update(buf).digest('hex');
}
const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');
function main(argv) {
  const [verb, ...rest] = argv, opt = {};
  for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^-+/, '')] = rest[i + 1];
  if (verb === 'digest') {
    console.log(digest(opt.kind || 'normal', opt.seed || '0', Number(opt.tid || 0), Number(opt.start || 0), Number(opt.count || 2 ** 20)));
  } else if (verb === 'tensor') {
    const shape = opt.shape.split(',').filter((x) => x !== '').map(Number);
    const slice = opt.slice && opt.slice.split(',').map((t, d) => { // numpy notation, no steps
      const [a, b] = t.split(':'); return [a === '' ? 0 : Number(a), b === '' ? shape[d] : Number(b)];
    });
    const buf = makeTensor(JSON.parse(opt.recipe), shape, opt.seed || '0', Number(opt.tid || 0), opt.dtype || 'float32', slice);
    if (opt.o || opt.output) fs.writeFileSync(opt.o || opt.output, buf); else process.stdout.write(buf);
  } else if (verb === 'batch') {
    const out = [];
    for (const line of fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.trim())) {
      const c = JSON.parse(line);
      try { out.push(sha(makeTensor(c.recipe, c.shape, String(c.seed), c.tid || 0, c.dtype || 'float32', c.slice))); }
      catch (e) { out.push(`error: ${e.message}`); }
    }
    process.stdout.write(out.join('\n') + '\n');
  } else {
    process.stderr.write('usage: portable.js tensor|digest|batch [options] (see the header of this file)\n');
    process.exit(2);
  }
}
if (require.main === module) main(process.argv.slice(2));
module.exports = { philox, normal, uniform, plan, makeTensor, digest };
