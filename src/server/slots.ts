// The limit on builds a `builder serve` runs at once (--max-concurrent-builds): requests past it wait in a
// first-come, first-served queue. A waiter whose client went away leaves the queue at once. The queue is a
// linked list: taking the head and dropping a canceled waiter cost the same however long it is.

interface Waiter {
  grant: () => void;
  prev?: Waiter;
  next?: Waiter;
}

export class BuildSlots {
  private running = 0;
  private waiting = 0;
  private head?: Waiter;
  private tail?: Waiter;

  /** `max` 0 or undefined: no limit. */
  constructor(private readonly max = 0) {}

  get stats(): { running: number; queued: number; max: number } {
    return { running: this.running, queued: this.waiting, max: this.max };
  }

  /** Requests before this one in the queue if it had to wait now (0: it would start at once). */
  get ahead(): number {
    return this.max > 0 && this.running >= this.max ? this.waiting + 1 : 0;
  }

  /**
   * Resolves with a release function once a slot is free; rejects with a CANCELED error when `signal`
   * aborts first. `onQueued` is told how many requests are ahead when it has to wait.
   */
  acquire(signal?: AbortSignal, onQueued?: (ahead: number) => void): Promise<() => void> {
    if (this.max <= 0 || this.running < this.max) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    onQueued?.(this.waiting + 1);
    return new Promise((resolve, reject) => {
      const w: Waiter = { grant: () => { signal?.removeEventListener('abort', onAbort); resolve(this.releaser()); } };
      const onAbort = () => {
        this.unlink(w);
        reject(Object.assign(new Error('build canceled'), { code: 'CANCELED' }));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      w.prev = this.tail;
      if (this.tail) this.tail.next = w; else this.head = w;
      this.tail = w;
      this.waiting++;
    });
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.head;
      if (next) {
        // The slot passes straight to the next waiter: `running` stays the same.
        this.unlink(next);
        next.grant();
      } else {
        this.running--;
      }
    };
  }

  private unlink(w: Waiter): void {
    if (w.prev) w.prev.next = w.next; else if (this.head === w) this.head = w.next; else return;
    if (w.next) w.next.prev = w.prev; else this.tail = w.prev;
    w.prev = w.next = undefined;
    this.waiting--;
  }
}
