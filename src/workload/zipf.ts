/*
 * Rejection-inversion sampling of a Zipf distribution over ranks 1..n with
 * exponent s (Hoermann and Derflinger 1996, as Apache Commons RNG does it).
 * The kernel (assembly/workload.ts) samples; these functions compute the
 * constants it needs, and serve the TypeScript oracle.
 */

function helper1(x: number): number {
  return Math.abs(x) > 1e-8 ? Math.log1p(x) / x : 1 - x * (0.5 - x * (1 / 3 - 0.25 * x));
}

function helper2(x: number): number {
  return Math.abs(x) > 1e-8 ? Math.expm1(x) / x : 1 + x * 0.5 * (1 + (x * (1 + 0.25 * x)) / 3);
}

/** H(x), the integral of x^-s, shifted to be smooth at s = 1. */
export function zipfHIntegral(x: number, s: number): number {
  const logX = Math.log(x);
  return helper2((1 - s) * logX) * logX;
}

/** h(x) = x^-s. */
export function zipfH(x: number, s: number): number {
  return Math.exp(-s * Math.log(x));
}

/** The inverse of {@link zipfHIntegral}. */
export function zipfHIntegralInverse(x: number, s: number): number {
  let t = x * (1 - s);
  if (t < -1) t = -1;
  return Math.exp(helper1(t) * x);
}

/** The sampler's constants for n ranks and exponent s. */
export interface ZipfConstants {
  readonly s: number;
  readonly hIntegralX1: number;
  readonly hIntegralN: number;
  readonly sDiv: number;
}

/** Computes the sampler's constants. */
export function zipfConstants(n: number, s: number): ZipfConstants {
  return {
    s,
    hIntegralX1: zipfHIntegral(1.5, s) - 1,
    hIntegralN: zipfHIntegral(n + 0.5, s),
    sDiv: 2 - zipfHIntegralInverse(zipfHIntegral(2.5, s) - zipfH(2, s), s),
  };
}
