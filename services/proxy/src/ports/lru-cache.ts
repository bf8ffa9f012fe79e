/**
 * A bounded cache that drops the least recently used entries first, on an insertion-ordered Map.
 *
 * V8's Map keeps a deleted entry as a hole until its table is rebuilt: moving an entry to the end
 * on every hit (delete, then set) made each hit cost time linear in the size (27 µs of CPU per hit
 * in a full cache of 10,000 decisions), and finding the oldest entry with a fresh `keys()` walked
 * over every hole left at the front (7 µs per insertion). So a hit moves its entry only when it is
 * in the older half (at most once per half a capacity of insertions), and the oldest entry is found
 * by one iterator kept across evictions. An entry read at least once per half a capacity of
 * insertions is never evicted; eviction order is least recently moved first.
 */
export class LruCache<V> {
  readonly #entries = new Map<string, { value: V; stamp: number }>();
  /** Insertions and moves so far: an entry's stamp says how many happened before its own. */
  #clock = 0;
  #oldest: IterableIterator<string> | undefined;

  constructor(private readonly max: number) {}

  get(key: string): V | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.#clock - entry.stamp > this.max / 2) {
      this.#entries.delete(key);
      entry.stamp = this.#clock++;
      this.#entries.set(key, entry);
    }
    return entry.value;
  }

  set(key: string, value: V): void {
    this.#entries.delete(key);
    this.#entries.set(key, { value, stamp: this.#clock++ });
    while (this.#entries.size > this.max) this.#entries.delete(this.#nextOldest());
  }

  clear(): void {
    this.#entries.clear();
    this.#oldest = undefined;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The iterator walks the entries in order and sees those moved or added after it started; a finished one starts again. */
  #nextOldest(): string {
    let next = this.#oldest?.next();
    if (next === undefined || next.done) {
      this.#oldest = this.#entries.keys();
      next = this.#oldest.next();
    }
    return next.value as string;
  }
}
