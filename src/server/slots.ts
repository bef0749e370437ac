// The limit on builds a `builder serve` runs at once (--max-concurrent-builds). Requests past it wait; when
// a slot frees, clients take turns (round robin over the clients with waiting builds, each client's own
// builds first come, first served), so one client queueing many builds does not hold the others back.
// A waiter whose client went away leaves the queue at once. Queues and the ring of clients are linked
// lists: granting, queueing and canceling cost the same however many wait.

interface Waiter {
  grant: () => void;
  queue: ClientQueue;
  prev?: Waiter;
  next?: Waiter;
}

interface ClientQueue {
  key: string;
  head?: Waiter;
  tail?: Waiter;
  /** Neighbours in the ring of clients with waiting builds. */
  prev?: ClientQueue;
  next?: ClientQueue;
}

export class BuildSlots {
  private running = 0;
  private waiting = 0;
  private readonly queues = new Map<string, ClientQueue>();
  /** The client served next; undefined when nobody waits. */
  private cursor?: ClientQueue;

  /** `max` 0 or undefined: no limit. */
  constructor(private readonly max = 0) {}

  get stats(): { running: number; queued: number; max: number } {
    return { running: this.running, queued: this.waiting, max: this.max };
  }

  /**
   * Resolves with a release function once a slot is free; rejects with a CANCELED error when `signal`
   * aborts first. `client` identifies who asks (a certificate, an address), for taking turns; `onQueued` is
   * told how many builds were already waiting when it has to wait.
   */
  acquire(signal?: AbortSignal, onQueued?: (waiting: number) => void, client = ''): Promise<() => void> {
    if (this.max <= 0 || this.running < this.max) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    onQueued?.(this.waiting);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.remove(w);
        reject(Object.assign(new Error('build canceled'), { code: 'CANCELED' }));
      };
      const w: Waiter = { grant: () => { signal?.removeEventListener('abort', onAbort); resolve(this.releaser()); }, queue: this.queueOf(client) };
      if (signal?.aborted) return reject(Object.assign(new Error('build canceled'), { code: 'CANCELED' }));
      signal?.addEventListener('abort', onAbort, { once: true });
      const q = w.queue;
      w.prev = q.tail;
      if (q.tail) q.tail.next = w; else q.head = w;
      q.tail = w;
      this.waiting++;
    });
  }

  /** The client's queue, joining the ring as the last to be served in this round when it had no waiters. */
  private queueOf(key: string): ClientQueue {
    let q = this.queues.get(key);
    if (q) return q;
    q = { key };
    this.queues.set(key, q);
    if (!this.cursor) {
      q.prev = q.next = q;
      this.cursor = q;
    } else {
      const last = this.cursor.prev!;
      q.prev = last;
      q.next = this.cursor;
      last.next = q;
      this.cursor.prev = q;
    }
    return q;
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const q = this.cursor;
      if (q?.head) {
        // The slot passes straight to the next client's oldest build: `running` stays the same.
        const w = q.head;
        this.cursor = q.next === q ? q : q.next;
        this.remove(w);
        w.grant();
      } else {
        this.running--;
      }
    };
  }

  private remove(w: Waiter): void {
    const q = w.queue;
    if (w.prev) w.prev.next = w.next; else if (q.head === w) q.head = w.next; else return;
    if (w.next) w.next.prev = w.prev; else q.tail = w.prev;
    w.prev = w.next = undefined;
    this.waiting--;
    if (q.head) return;
    // Nobody of this client waits: it leaves the ring.
    this.queues.delete(q.key);
    if (q.next === q) {
      this.cursor = undefined;
    } else {
      q.prev!.next = q.next;
      q.next!.prev = q.prev;
      if (this.cursor === q) this.cursor = q.next;
    }
    q.prev = q.next = undefined;
  }
}
