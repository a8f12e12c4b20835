/**
 * A FIFO whose nodes are the jobs themselves (intrusive links), so that
 * enqueue, dequeue and removing a cancelled job from the middle are all O(1)
 * and allocate nothing. The bound is enforced by the worker, which reserves
 * a slot in the same synchronous step as selection.
 */
export interface QueueNode {
  prev: QueueNode | null;
  next: QueueNode | null;
}

export class JobQueue<T extends QueueNode> {
  private head: T | null = null;
  private tail: T | null = null;
  length = 0;

  push(node: T): void {
    node.prev = this.tail;
    node.next = null;
    if (this.tail === null) this.head = node;
    else this.tail.next = node;
    this.tail = node;
    this.length++;
  }

  /** The oldest node, left in place. */
  peek(): T | undefined {
    return this.head ?? undefined;
  }

  /** The newest node, left in place. */
  last(): T | undefined {
    return this.tail ?? undefined;
  }

  shift(): T | undefined {
    const node = this.head;
    if (node === null) return undefined;
    this.remove(node);
    return node;
  }

  /** Unlinks a node known to be in this queue. */
  remove(node: T): void {
    if (node.prev === null) this.head = node.next as T | null;
    else node.prev.next = node.next;
    if (node.next === null) this.tail = node.prev as T | null;
    else node.next.prev = node.prev;
    node.prev = null;
    node.next = null;
    this.length--;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let n = this.head; n !== null; n = n.next as T | null) yield n;
  }
}
