/**
 * A token bucket (as Envoy's local rate limit filter): `burst` tokens at most, refilled at
 * `ratePerSecond`, one taken per request. Pure: the bucket is a value, time a parameter.
 */
export interface TokenBucketConfig {
  ratePerSecond: number;
  burst: number;
}

export interface TokenBucket {
  tokens: number;
  /** When `tokens` was last brought up to date, epoch ms. */
  at: number;
}

export function fullBucket(config: TokenBucketConfig, now: number): TokenBucket {
  return { tokens: config.burst, at: now };
}

export type TakeResult =
  | { allowed: true; bucket: TokenBucket }
  /** `retryAfterMs`: when the next token will be there. */
  | { allowed: false; bucket: TokenBucket; retryAfterMs: number };

export function takeToken(bucket: TokenBucket, config: TokenBucketConfig, now: number): TakeResult {
  const elapsed = Math.max(0, now - bucket.at);
  const tokens = Math.min(config.burst, bucket.tokens + (elapsed * config.ratePerSecond) / 1000);
  if (tokens >= 1) return { allowed: true, bucket: { tokens: tokens - 1, at: now } };
  const retryAfterMs = Math.ceil(((1 - tokens) * 1000) / config.ratePerSecond);
  return { allowed: false, bucket: { tokens, at: now }, retryAfterMs };
}

/** Retry-After is whole seconds (RFC 9110 §10.2.3); never 0, which would invite an immediate retry. */
export function retryAfterSeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}
