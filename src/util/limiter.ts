// Bounds how many async calls run at once: enough to keep the thread pool busy, few enough to cap open files.
// Waiters queue in a linked FIFO: hundreds of thousands of them (a file per waiter in a big COPY) cost
// O(1) each to add and to wake, where an array's shift() moves every element left behind the first.

interface Link<T> { value: T; next: Link<T> | null }

/** A first-in first-out queue whose push and shift take constant time whatever its length. */
export class Fifo<T> {
  private head: Link<T> | null = null;
  private tail: Link<T> | null = null;
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(value: T): void {
    const link: Link<T> = { value, next: null };
    if (this.tail) this.tail.next = link;
    else this.head = link;
    this.tail = link;
    this.count++;
  }

  shift(): T | undefined {
    const link = this.head;
    if (!link) return undefined;
    this.head = link.next;
    if (!this.head) this.tail = null;
    this.count--;
    return link.value;
  }
}


export class Limiter {
  private active = 0;
  private readonly waiting = new Fifo<() => void>();
  constructor(private readonly max: number) {}

  /** Calls that have not started yet. */
  get pending(): number {
    return this.waiting.size;
  }

  /** Runs `fn` once fewer than `max` calls are running; calls start in the order they were made. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    // Taken over from the call that finished (its slot is handed on, not freed), so no later caller
    // can slip in between and the order holds.
    if (this.active >= this.max) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
