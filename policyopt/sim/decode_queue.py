"""The decoding requests of one class at one engine, oldest first, served a decode token per
batch: finish times filed lazily so that a batch costs O(log n) however long the queue
(the network simulator's decode queues)."""

from __future__ import annotations

import heapq
from collections import deque
from itertools import islice
from typing import Any


class DecodeQueue:
    """Decoding jobs of one class at one engine, oldest first.

    Every batch serves the oldest ``m`` jobs, one decode token each, and at most ``cap`` of
    them (the engine's ``min(token_budget, max_seqs)``), so only the oldest ``cap`` jobs (the
    *window*, :attr:`alive`) can make progress; the others wait in :attr:`outside` with their
    remaining tokens as they are, and enter the window, oldest first, as window jobs finish.

    A window job's remaining decode tokens are ``key + delay(seq) - G``: ``G`` counts the
    batches that served this class, ``seq`` numbers the jobs in the order they joined, and a
    batch that serves only a prefix of the window delays the unserved rest by one, a range
    update that is one point update of a Fenwick tree over ``seq`` (``delay(seq)`` is a prefix
    sum; a job's ``key`` is stored net of the delays before it entered the window). A heap of
    lower bounds of the window's finish keys finds the finished jobs; an entry is corrected
    when it reaches the top. A batch costs O(log n) plus O(log n) per finished job, however
    long the queue.

    The jobs that finish in one batch are returned in job-id order (as the heap pops them:
    every entry popped in a round has the key ``G``). A job is any object with an ``id`` (an
    int, unique) and a writable ``dseq`` attribute.
    """

    __slots__ = ("G", "alive", "cap", "heap", "outside", "seq", "total", "tree")

    def __init__(self, cap: int = 1 << 62) -> None:
        self.alive: dict[Any, int] = {}  # the window, oldest first: job -> key
        self.outside: deque[tuple[Any, int]] = deque()  # the rest: (job, remaining tokens)
        self.heap: list[tuple[int, int, Any]] = []
        self.G = 0
        self.cap = cap
        self.tree = [0] * 1025  # Fenwick tree over sequence numbers 1..1024 (grows)
        self.seq = 0  # the last sequence number given
        self.total = 0  # every delay added so far (the prefix sum past the last number)

    def clear(self) -> None:
        """Empty the queue (its containers stay the same objects: readers may hold them)."""
        self.alive.clear()
        self.outside.clear()
        self.heap.clear()
        self.G = 0
        self.tree = [0] * 1025
        self.seq = 0
        self.total = 0

    def __len__(self) -> int:
        return len(self.alive) + len(self.outside)

    def _delay(self, seq: int) -> int:
        """Delays that apply to the job numbered ``seq`` (a Fenwick prefix sum)."""
        tree = self.tree
        s = 0
        while seq:
            s += tree[seq]
            seq &= seq - 1
        return s

    def _renumber(self) -> None:
        """Number the jobs again from 1, folding the delays into the window's keys."""
        alive = self.alive
        total = self.total
        i = 0
        for job, key in alive.items():
            if total:
                alive[job] = key + self._delay(job.dseq)  # type: ignore[attr-defined]
            i += 1
            job.dseq = i  # type: ignore[attr-defined]
        for job, _ in self.outside:
            i += 1
            job.dseq = i  # type: ignore[attr-defined]
        self.seq = i
        self.tree = [0] * (max(1024, 4 * i) + 1)
        self.total = 0

    def add(self, job: Any, tokens: int) -> None:
        """``job`` starts decoding ``tokens`` tokens (the youngest of the queue)."""
        seq = self.seq + 1
        if seq >= len(self.tree):
            self._renumber()
            seq = self.seq + 1
        self.seq = seq
        job.dseq = seq
        alive = self.alive
        if len(alive) < self.cap:  # then nothing waits outside
            key = self.G + tokens
            alive[job] = key - self.total
            heapq.heappush(self.heap, (key, job.id, job))
        else:
            self.outside.append((job, tokens))

    def pop_last(self) -> tuple[Any, int, bool]:
        """Take out the youngest job (preempted): ``(job, decode tokens left, whether it was in
        the window)``."""
        if self.outside:
            job, tokens = self.outside.pop()
            return job, tokens, False
        job, key = self.alive.popitem()
        if self.total:
            key += self._delay(job.dseq)
        self._unheap(job)
        return job, key - self.G, True

    def _unheap(self, job: Any) -> None:
        """Take ``job``'s entry (if any) out of the heap of finishing times."""
        heap = self.heap
        for i, entry in enumerate(heap):
            if entry[2] is job:
                heap[i] = heap[-1]
                heap.pop()
                heapq.heapify(heap)
                return

    def remove(self, job: Any) -> tuple[int, bool]:
        """Take ``job`` out from anywhere in the queue (an admission rule holds it back):
        ``(decode tokens left, whether it was in the window)``. The oldest job waiting outside
        the window takes its place there."""
        alive = self.alive
        if job not in alive:
            outside = self.outside
            for i, (other, tokens) in enumerate(outside):
                if other is job:
                    del outside[i]
                    return tokens, False
            raise KeyError(f"job {job.id} is not in this decode queue")
        key = alive.pop(job)
        if self.total:
            key += self._delay(job.dseq)
        self._unheap(job)
        if self.outside:  # the window keeps the oldest jobs
            other, tokens = self.outside.popleft()
            entry_key = self.G + tokens
            alive[other] = entry_key - self.total
            heapq.heappush(self.heap, (entry_key, other.id, other))
        return key - self.G, True

    def remaining(self, job: Any) -> int:
        """Decode tokens ``job`` still needs."""
        if job in self.alive:
            return self.alive[job] + self._delay(job.dseq) - self.G
        return next(tokens for other, tokens in self.outside if other is job)

    def context(self, m: int) -> int:
        """KV tokens the oldest ``m`` jobs read: prompt plus decode tokens done, each."""
        total, G = self.total, self.G
        read = 0
        for job, key in islice(self.alive.items(), m):
            if total:
                key += self._delay(job.dseq)
            read += job.prompt + job.dec_tokens - (key - G)
        return read

    def serve(self, m: int) -> list[Any]:
        """One decode token to each of the ``m`` oldest jobs (``m`` at most the window's
        size); the jobs that finish."""
        if m <= 0:
            return []
        alive = self.alive
        if m < len(alive):  # the rest of the window waits: delay numbers >= its first one's
            seq = next(islice(alive, m, None)).dseq
            tree = self.tree
            size = len(tree)
            while seq < size:
                tree[seq] += 1
                seq += seq & -seq
            self.total += 1
        self.G = G = self.G + 1
        heap = self.heap
        if not heap or heap[0][0] > G:
            return []
        done: list[Any] = []
        total = self.total
        while heap and heap[0][0] <= G:
            entry = heapq.heappop(heap)
            job = entry[2]
            key = alive[job]
            if total:
                seq = job.dseq
                tree = self.tree
                while seq:
                    key += tree[seq]
                    seq &= seq - 1
            if key == G:
                done.append(job)
            else:  # delayed: file it again at its true key
                heapq.heappush(heap, (key, entry[1], job))
        if done:
            for job in done:
                del alive[job]
            outside = self.outside
            if outside:  # the oldest waiting jobs take the freed places in the window
                for _ in range(min(len(done), len(outside))):
                    job, tokens = outside.popleft()
                    key = G + tokens
                    alive[job] = key - total
                    heapq.heappush(heap, (key, job.id, job))
        return done
