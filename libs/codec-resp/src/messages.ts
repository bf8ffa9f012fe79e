/**
 * A decoded RESP2/RESP3 value, one union member per wire type.
 * @see https://redis.io/docs/latest/develop/reference/protocol-spec/
 */
export type RespValue =
  | { readonly type: 'simple'; readonly value: string }
  | { readonly type: 'error'; readonly value: string }
  | { readonly type: 'blobError'; readonly value: Buffer }
  | { readonly type: 'integer'; readonly value: bigint }
  | { readonly type: 'bulk'; readonly value: Buffer }
  | { readonly type: 'verbatim'; readonly format: string; readonly value: Buffer }
  /** `_` is RESP3's null; `$-1` and `*-1` are RESP2's null bulk and null array. */
  | { readonly type: 'null'; readonly form: '_' | '$' | '*' }
  /** `raw` keeps the wire text (`inf`, `-nan`, `1.5e3`) so re-encoding is exact. */
  | { readonly type: 'double'; readonly value: number; readonly raw: string }
  | { readonly type: 'boolean'; readonly value: boolean }
  | { readonly type: 'bigNumber'; readonly value: bigint }
  | { readonly type: 'array'; readonly items: readonly RespValue[] }
  | { readonly type: 'set'; readonly items: readonly RespValue[] }
  | { readonly type: 'push'; readonly items: readonly RespValue[] }
  | { readonly type: 'map'; readonly entries: readonly (readonly [RespValue, RespValue])[] }
  /** An attribute carries metadata for the value that follows it on the wire. */
  | {
      readonly type: 'attribute';
      readonly attributes: readonly (readonly [RespValue, RespValue])[];
      readonly value: RespValue;
    };

export type RespValueType = RespValue['type'];
