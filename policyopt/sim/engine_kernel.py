"""The compiled batches of LLM engines (numba), for the compiled event loop.

:func:`form_batch` is :meth:`NetworkSimulator._form_batch <policyopt.sim.network_sim.
NetworkSimulator._form_batch>` for an engine without a KV-cache limit whose scheduler is one
of the four built-in ones (:mod:`policyopt.sim.schedulers`: FasterTransformer, vanilla vLLM,
Orca, Sarathi-Serve, with their options), in policy mode and without a budget split. It forms
the batch by the same rules (``fill_decode`` and ``fill_prefill`` of
:mod:`policyopt.sim.schedulers.base`), judges work conservation as
:func:`policyopt.sim.batching.not_work_conserving` does, applies the batch and schedules its
end, performing the same arithmetic in the same order, so a run's numbers are the Python
loop's bit for bit (``tests/test_compiled_loop.py``).

The decoding requests of a class sit in a ring in the order they started decoding (their
request numbers' order); a batch serves the oldest ``m`` of them, one token each, and the
ones that finish leave the ring. The Python decode queue files finish times lazily to stay
O(log n) per batch; here a batch costs O(m), which compiled is cheaper.

State (:class:`~policyopt.sim.compiled_loop.LoopState` builds it): per engine, the integer
columns ``L_*`` of ``e_li`` and the float columns ``G_*`` of ``e_lf``; per request slot, the
columns ``T_*`` of ``j_tok``; the finished requests of the batch in flight, ``e_fin[a,
:e_li[a, L_NFIN]]``; the batch being formed, ``pl`` and ``pn`` (see :func:`form_batch`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# the schedulers (SchedulerSpec names)
FASTERTRANSFORMER, VLLM, ORCA, SARATHI = 0, 1, 2, 3
SCHEDULER_CODES = {"fastertransformer": FASTERTRANSFORMER, "vllm": VLLM, "orca": ORCA}
SCHEDULER_CODES["sarathi"] = SARATHI
# integer columns of e_li: scheduler, chunked prefill, token budget, request slots, a batch-time
# table (else affine), the KV read matters, the profiled range (-1: unknown), prompts waiting,
# decoding requests, prefill tokens waiting, KV tokens held and their maximum, counters,
# finished requests of the batch in flight
L_SCHED, L_CHUNKED, L_B, L_KMAX, L_TABLE, L_KVM, L_MAXTOK, L_MAXKV = 0, 1, 2, 3, 4, 5, 6, 7
L_NWAIT, L_NDEC, L_PRE, L_KV, L_KVMAX = 8, 9, 10, 11, 12
L_TOKENS, L_FULL, L_NWC, L_OOR, L_NFIN = 13, 14, 15, 16, 17
# a limited KV cache (kv_memory.KVMemory): whether there is one, its blocks (all, free), block
# size, watermark, recompute (else swap), counters (preemptions, tokens recomputed and swapped,
# most blocks used), the resident requests (a list by admission: first, last), the swapped-out
# ones (first, last), the prefill tokens of the prompts shown to the scheduler, how many are
# swapped out, whether a request's preemptions outgrow the counts of e_pc
L_MEM, L_TOTAL, L_FREE, L_BLK, L_WATER, L_RECOMP = 18, 19, 20, 21, 22, 23
L_PREEMPTS, L_RECOMPUTED, L_SWAPTOK, L_USEDMAX = 24, 25, 26, 27
L_RHEAD, L_RTAIL, L_SHEAD, L_STAIL, L_SHOWN, L_NSWAP, L_PCWIDE = 28, 29, 30, 31, 32, 33, 34
# external mode: the next batch's token cap and decode cap (tokens; -1: none), then cleared
L_TCAP, L_DCAP = 35, 36
N_LI = 37
# float columns of e_lf: the affine model (ms), busy seconds, KV-token seconds, swap seconds
# per token, allocated-token seconds
G_C, G_CP, G_CD, G_CKV, G_BTIME, G_KVAREA, G_SWAP_S, G_MEMAREA = 0, 1, 2, 3, 4, 5, 6, 7
N_LF = 8
# columns of j_tok: prefill tokens left, prompt tokens, decode tokens, decode tokens left; with
# a KV cache, KV tokens held (of a prompt being prefilled or swapped out; a decoder's follow
# from the others), blocks, times preempted, and the links of the resident or swapped list
T_PRE, T_PROMPT, T_DEC, T_REM = 0, 1, 2, 3
T_HELD, T_BLOCKS, T_PREEMPTED, T_PREV, T_NEXT = 4, 5, 6, 7, 8
# and, for the admission rule, running sums along its class's queue of the blocks a prompt needs
# to be admitted (its prefill tokens and one more) and of its prefill tokens; ``qb[0, k]``,
# ``qb[1, k]``: their values before the head of class k's queue
T_CNEED, T_CTOK = 9, 10
N_TOK = 11
# the batch being formed: pl[P_DK], pl[P_DM]: decode (class, requests); pl[P_PK], pl[P_PW],
# pl[P_PC]: prefill (class, whole prompts, chunk tokens); pn: their counts, x and m
P_DK, P_DM, P_PK, P_PW, P_PC = 0, 1, 2, 3, 4
N_PN_D, N_PN_P, N_PN_X, N_PN_M = 0, 1, 2, 3


@njit(cache=True)
def _link(e_li, j_tok, a, s, first, last):
    """Append slot ``s`` to engine ``a``'s list (the columns ``first``, ``last`` of e_li)."""
    tail = e_li[a, last]
    j_tok[s, T_PREV] = tail
    j_tok[s, T_NEXT] = -1
    if tail >= 0:
        j_tok[tail, T_NEXT] = s
    else:
        e_li[a, first] = s
    e_li[a, last] = s


@njit(cache=True)
def _unlink(e_li, j_tok, a, s, first, last):
    """Take slot ``s`` out of engine ``a``'s list."""
    prev, nxt = j_tok[s, T_PREV], j_tok[s, T_NEXT]
    if prev >= 0:
        j_tok[prev, T_NEXT] = nxt
    else:
        e_li[a, first] = nxt
    if nxt >= 0:
        j_tok[nxt, T_PREV] = prev
    else:
        e_li[a, last] = prev


@njit(cache=True)
def _take_blocks(e_li, a, blocks):
    """``blocks`` blocks leave engine ``a``'s free ones (the most ever used kept)."""
    e_li[a, L_FREE] -= blocks
    used = e_li[a, L_TOTAL] - e_li[a, L_FREE]
    if used > e_li[a, L_USEDMAX]:
        e_li[a, L_USEDMAX] = used


@njit(cache=True)
def _admit(e_li, j_tok, a, s):
    """Request ``s`` starts its prefill: blocks for all its prefill tokens (``KVMemory.admit``)."""
    blk = e_li[a, L_BLK]
    need = -(-j_tok[s, T_PRE] // blk)
    j_tok[s, T_BLOCKS] = need
    _link(e_li, j_tok, a, s, L_RHEAD, L_RTAIL)
    _take_blocks(e_li, a, need)


@njit(cache=True)
def _release(e_li, j_tok, a, s):
    """Request ``s`` leaves the cache (``KVMemory.release``)."""
    e_li[a, L_FREE] += j_tok[s, T_BLOCKS]
    j_tok[s, T_BLOCKS] = 0
    _unlink(e_li, j_tok, a, s, L_RHEAD, L_RTAIL)


@njit(cache=True, inline="always")
def _full(held, blk):
    """Whether ``held`` KV tokens fill their blocks of ``blk`` tokens (no division when
    ``blk`` is a power of two, as usual)."""
    if blk & (blk - 1) == 0:
        return held & (blk - 1) == 0
    return held % blk == 0


@njit(cache=True)
def _blocks_needed(pre, blk):
    """Blocks a prompt of ``pre`` prefill tokens needs to be admitted (and one token more)."""
    return -(-(pre + 1) // blk)


@njit(cache=True)
def queued(e_li, j_tok, qb, q, q_head, q_len, a, k, s):
    """Prompt ``s`` joined the tail of class ``k``'s queue at engine ``a`` (a KV cache): its
    running sums."""
    n = q_len[k]
    if n > 1:
        i = q_head[k] + n - 2
        if i >= q.shape[1]:
            i -= q.shape[1]
        prev = q[k, i]
        need, tok = j_tok[prev, T_CNEED], j_tok[prev, T_CTOK]
    else:
        need, tok = qb[0, k], qb[1, k]
    pre = j_tok[s, T_PRE]
    j_tok[s, T_CNEED] = need + _blocks_needed(pre, e_li[a, L_BLK])
    j_tok[s, T_CTOK] = tok + pre


@njit(cache=True)
def make_room(
    a, order, n_order, classes, n_classes, e_li, j_tok, j_cls, q, q_head, q_len, d, d_head,
    d_len, sh, work_left, e_backlog, e_arrived, qb, e_pc,
):  # fmt: skip
    """Engine ``a`` with a limited KV cache, before its batch (``NetworkSimulator._make_room``
    with the ``fcfs`` admission rule): preempt the youngest residents until every decoder the
    batch may serve can grow by a token, swap requests back in, and show the scheduler the
    prompts that may take blocks (``sh[k]`` per class, their prefill tokens in
    ``e_li[a, L_SHOWN]``). Returns the KV tokens moved to or from host memory."""
    blk = e_li[a, L_BLK]
    cap = e_li[a, L_B] if e_li[a, L_B] < e_li[a, L_KMAX] else e_li[a, L_KMAX]
    qcap = q.shape[1]
    dcap = d.shape[1]
    need = 0  # decoders the batch may serve (each class's oldest cap) with full blocks
    for c in range(n_classes):
        k = classes[c]
        h = d_head[k]
        w = d_len[k] if d_len[k] < cap else cap
        for r in range(w):
            i = h + r
            if i >= dcap:
                i -= dcap
            s = d[k, i]
            if _full(j_tok[s, T_PROMPT] + j_tok[s, T_DEC] - j_tok[s, T_REM], blk):
                need += 1
    moved = 0
    preempted = False
    while need > e_li[a, L_FREE]:
        v = e_li[a, L_RTAIL]  # the most recently admitted resident
        k = j_cls[v]
        partial = j_tok[v, T_PRE] > 0  # partly prefilled: the head of its class's queue
        left = 0
        if not partial:  # a decoder: the youngest of its class, out of its queue
            pos = d_len[k] - 1
            left = j_tok[v, T_REM]
            held = j_tok[v, T_PROMPT] + j_tok[v, T_DEC] - left
            j_tok[v, T_HELD] = held
            j_tok[v, T_BLOCKS] = -(-held // blk)
            d_len[k] = pos
            if pos < cap and held % blk == 0:
                need -= 1
        held = j_tok[v, T_HELD]
        _release(e_li, j_tok, a, v)
        e_li[a, L_PREEMPTS] += 1
        j_tok[v, T_PREEMPTED] += 1
        if j_tok[v, T_PREEMPTED] + 1 >= e_pc.shape[1]:  # the counts need more columns
            e_li[a, L_PCWIDE] = 1
        e_li[a, L_KV] -= held
        preempted = True
        if partial:  # recompute (still the head of its queue: the sums before it change)
            pre = j_tok[v, T_PRE] + held
            j_tok[v, T_PRE] = pre
            qb[0, k] = j_tok[v, T_CNEED] - _blocks_needed(pre, blk)
            qb[1, k] = j_tok[v, T_CTOK] - pre
        else:
            e_li[a, L_NDEC] -= 1
            j_tok[v, T_REM] = left
            if e_li[a, L_RECOMP] == 0:  # swap out
                _link(e_li, j_tok, a, v, L_SHEAD, L_STAIL)
                e_li[a, L_NSWAP] += 1
                e_li[a, L_SWAPTOK] += held
                moved += held
                continue
            j_tok[v, T_PRE] = held  # recompute: back to the head of its class's queue
            q_head[k] = (q_head[k] - 1) % qcap
            q[k, q_head[k]] = v
            q_len[k] += 1
            j_tok[v, T_CNEED], j_tok[v, T_CTOK] = qb[0, k], qb[1, k]
            qb[0, k] -= _blocks_needed(held, blk)
            qb[1, k] -= held
            e_li[a, L_NWAIT] += 1
        j_tok[v, T_HELD] = 0
        e_li[a, L_RECOMPUTED] += held
        e_li[a, L_PRE] += held
        e_backlog[a] += held
        e_arrived[a] += held
        work_left[k] += held
    while e_li[a, L_SHEAD] >= 0 and not preempted:  # back in the order they left, while they fit
        s = e_li[a, L_SHEAD]
        held = j_tok[s, T_HELD]
        if -(-(held + 1) // blk) > e_li[a, L_FREE] - need - e_li[a, L_WATER]:
            break
        _unlink(e_li, j_tok, a, s, L_SHEAD, L_STAIL)
        e_li[a, L_NSWAP] -= 1
        blocks = -(-held // blk)
        j_tok[s, T_BLOCKS] = blocks
        _link(e_li, j_tok, a, s, L_RHEAD, L_RTAIL)
        e_li[a, L_SWAPTOK] += held
        _take_blocks(e_li, a, blocks)
        moved += held
        e_li[a, L_KV] += held
        if held >= blocks * blk:
            need += 1
        k = j_cls[s]
        d[k, (d_head[k] + d_len[k]) % dcap] = s
        d_len[k] += 1
        e_li[a, L_NDEC] += 1
    # admission (fcfs): oldest first within a class while each whole prompt and one token
    # more fit beside the growth and the watermark; a prompt that does not fit hides every
    # later one; none while a request is swapped out
    for c in range(n_classes):
        sh[classes[c]] = 0
    room = e_li[a, L_FREE] - need - (e_li[a, L_WATER] if e_li[a, L_RHEAD] >= 0 else 0)
    closed = e_li[a, L_SHEAD] >= 0
    tokens = 0
    for r in range(n_order):
        k = order[r]
        h = q_head[k]
        n = 0
        base_need, base_tok = qb[0, k], qb[1, k]
        if q_len[k] and j_tok[q[k, h], T_BLOCKS] > 0:  # partly prefilled: always shown
            n = 1
            tokens += j_tok[q[k, h], T_PRE]
            base_need, base_tok = j_tok[q[k, h], T_CNEED], j_tok[q[k, h], T_CTOK]
        if q_len[k] > n and not closed:
            # the most prompts from n on whose blocks fit: a binary search of the sums
            lo, hi = n, q_len[k]  # prompts lo.. fit so far? find the first that does not
            while lo < hi:
                mid = (lo + hi) // 2
                i = h + mid
                if i >= qcap:
                    i -= qcap
                if j_tok[q[k, i], T_CNEED] - base_need <= room:
                    lo = mid + 1
                else:
                    hi = mid
            if lo > n:
                i = h + lo - 1
                if i >= qcap:
                    i -= qcap
                last = q[k, i]
                room -= j_tok[last, T_CNEED] - base_need
                tokens += j_tok[last, T_CTOK] - base_tok
            if lo < q_len[k]:  # the next does not fit: it hides every prompt after it
                closed = True
            n = lo
        sh[k] = n
    e_li[a, L_SHOWN] = tokens
    return moved


@njit(cache=True)
def sort_by_key(o_buf, o_key, n):
    """Sort the first ``n`` classes of ``o_buf`` by ``(o_key, class)`` (insertion sort: a
    station has few classes)."""
    for i in range(1, n):
        k, key = o_buf[i], o_key[i]
        j = i - 1
        while j >= 0 and (o_key[j] > key or (o_key[j] == key and o_buf[j] > k)):
            o_buf[j + 1] = o_buf[j]
            o_key[j + 1] = o_key[j]
            j -= 1
        o_buf[j + 1] = k
        o_key[j + 1] = key


@njit(cache=True, inline="always")
def pressure_key(k, jobs, p_neg, p_ptr, p_succ, p_prob):
    """Class ``k``'s place in the maximum-pressure order, least first: ``-r_k (z_k - sum_l
    P_kl z_l)``, the sum left to right, as the policy computes it."""
    down = 0.0
    for s in range(p_ptr[k], p_ptr[k + 1]):
        down += p_prob[s] * jobs[p_succ[s]]
    return p_neg[k] * (jobs[k] - down)


@njit(cache=True)
def fill_decode(pl, pn, order, n_order, d_len, budget, slots):
    """One decode token to each decoding request, classes in ``order``, while ``budget``
    tokens and ``slots`` last (``fill_decode``); requests already served by the plan (an
    earlier pass) are not served twice: their classes are topped up. Returns the tokens
    taken."""
    if budget <= 0 or slots <= 0:
        return 0
    before = pn[N_PN_D]  # entries of earlier passes
    taken = 0
    for r in range(n_order):
        if budget <= 0 or slots <= 0:
            break
        k = order[r]
        nk = d_len[k]
        if nk == 0:
            continue
        pos = -1
        for i in range(before):
            if pl[P_DK, i] == k:
                pos = i
                nk -= pl[P_DM, i]
                break
        if nk <= 0:
            continue
        mk = nk
        if budget < mk:
            mk = budget
        if slots < mk:
            mk = slots
        if pos < 0:
            pos = pn[N_PN_D]
            pl[P_DK, pos] = k
            pl[P_DM, pos] = 0
            pn[N_PN_D] = pos + 1
        pl[P_DM, pos] += mk
        taken += mk
        budget -= mk
        slots -= mk
    pn[N_PN_M] += taken
    return taken


@njit(cache=True)
def fill_prefill(pl, pn, order, n_order, q, q_head, show, j_tok, budget, slots, chunked, whole_b):
    """Prefill tokens, classes in ``order``, first come first served within a class, whole
    prompts while they fit, then (``chunked``, or a prompt longer than the whole budget
    ``whole_b``) a chunk of the next; a whole prompt that does not fit stops all prefill
    (``fill_prefill``); ``show[k]``: the prompts of class ``k`` the scheduler sees. Returns the
    ``(budget, slots)`` left."""
    qcap = q.shape[1]
    x = 0
    for r in range(n_order):
        if budget <= 0 or slots <= 0:
            break
        k = order[r]
        whole = 0
        chunk = 0
        stop = False
        h = q_head[k]
        for i in range(show[k]):
            rem = j_tok[q[k, (h + i) % qcap], T_PRE]
            if rem <= budget:
                whole += 1
                budget -= rem
                x += rem
                slots -= 1
                if budget <= 0 or slots <= 0:
                    break
            else:
                if chunked or rem > whole_b:
                    chunk = budget
                    x += budget
                    budget = 0
                    slots -= 1
                else:
                    stop = True
                break
        if whole or chunk:
            i = pn[N_PN_P]
            pl[P_PK, i] = k
            pl[P_PW, i] = whole
            pl[P_PC, i] = chunk
            pn[N_PN_P] = i + 1
        if stop:
            break
    if x:
        pn[N_PN_X] += x
    return budget, slots


@njit(cache=True)
def fill(pl, pn, sched, chunked, order, n_order, q, q_head, show, d_len, j_tok, b, kmax):
    """The scheduler's rule (``Scheduler.fill`` of each of the four) into the empty plan."""
    if sched == FASTERTRANSFORMER:  # decode the running group, else admit the next
        for r in range(n_order):
            if d_len[order[r]]:
                fill_decode(pl, pn, order, n_order, d_len, b, kmax)
                return
        fill_prefill(pl, pn, order, n_order, q, q_head, show, j_tok, b, kmax, False, b)
    elif sched == VLLM:  # prefill-only batches while prompts wait, else decode-only
        for r in range(n_order):
            if show[order[r]]:
                fill_prefill(pl, pn, order, n_order, q, q_head, show, j_tok, b, kmax, False, b)
                return
        fill_decode(pl, pn, order, n_order, d_len, b, kmax)
    elif sched == ORCA:  # prefill first, then decode
        b2, k2 = fill_prefill(pl, pn, order, n_order, q, q_head, show, j_tok, b, kmax, chunked, b)
        fill_decode(pl, pn, order, n_order, d_len, b2, k2)
    else:  # SARATHI: decode first, then prefill
        m = fill_decode(pl, pn, order, n_order, d_len, b, kmax)
        fill_prefill(pl, pn, order, n_order, q, q_head, show, j_tok, b - m, kmax - m, chunked, b)


@njit(cache=True)
def not_work_conserving(n, available, budget, slots, decoding, waiting, remaining):
    """:func:`policyopt.sim.batching.not_work_conserving`, the prompts' remaining prefill
    tokens given as an array (``remaining``, ``waiting`` of them)."""
    if n >= budget or n >= available:
        return False
    if slots >= decoding + waiting:
        return True
    if waiting < slots:
        d = decoding if decoding < slots - waiting else slots - waiting
        return n < available - decoding + d
    if (available - decoding) * slots > n * waiting:
        return True
    top = np.sort(remaining[:waiting])[::-1]  # the slots go to the longest prompts
    total = 0
    for i in range(slots):
        total += top[i]
        if total > n:
            return True
    return False


@njit(cache=True)
def engine_order(
    a, o_buf, o_key, e_mode, e_order, e_norder, q, q_head, q_len, d, d_head, d_len, j_arr,
    jobs, p_neg, p_ptr, p_succ, p_prob, lin_a, lin_b,
):  # fmt: skip
    """The class order of LLM engine ``a`` now, in ``o_buf`` (returns its length): its
    class, a fixed order, first come first served (by each class's oldest request, waiting
    or decoding), maximum pressure or a linear index (largest first); ties by class index."""
    mode = e_mode[a]
    n = e_norder[a]
    for r in range(n):
        o_buf[r] = e_order[a, r]
    if mode <= 1 or mode == 5:  # SINGLE, FIXED or EXTERNAL: the order as it stands
        return n
    qcap = q.shape[1]
    dcap = d.shape[1]
    for r in range(n):
        k = o_buf[r]
        if mode == 2:  # FCFS
            key = np.inf
            if q_len[k]:
                key = j_arr[q[k, q_head[k] % qcap]]
            if d_len[k]:
                t2 = j_arr[d[k, d_head[k] % dcap]]
                if t2 < key:
                    key = t2
        elif mode == 3:  # PRESSURE: -r_k (z_k - sum_l P_kl z_l)
            key = pressure_key(k, jobs, p_neg, p_ptr, p_succ, p_prob)
        else:  # LINEAR: -(a_k z_k + b_k)
            key = -(lin_a[k] * jobs[k] + lin_b[k])
        o_key[r] = key
    sort_by_key(o_buf, o_key, n)
    return n


@njit(cache=True)
def form_batch(
    a, now, warmup, order, n_order, classes, n_classes, e_li, e_lf, e_table, e_fin, e_backlog,
    e_done, e_batches, q, q_head, q_len, show, d, d_head, d_len, j_tok, j_arr, j_id, work_left, pl,
    pn, r_buf, l_code, l_val, iv_log, swap_s, qb, e_pc,
):  # fmt: skip
    """Form, apply and time engine ``a``'s next batch with class order ``order[:n_order]``
    (the engine has work; ``classes[:n_classes]``: the classes it serves; ``show[k]``: the
    prompts of class ``k`` the scheduler sees, all of them without a KV cache; ``swap_s``: the
    seconds of KV moved to or from host memory first); returns its end time (s). The requests
    that finish are left in ``e_fin[a]`` for the batch's end; per-class first-token times go to
    the log (``iv_log[0]`` entries so far); with a KV cache, ``e_pc[a, c]`` counts the
    requests completed after warm-up that were preempted ``c`` times."""
    qcap = q.shape[1]
    dcap = d.shape[1]
    mem = e_li[a, L_MEM] != 0
    b = e_li[a, L_B]
    kmax = e_li[a, L_KMAX]
    n_dec = e_li[a, L_NDEC]
    n_wait = 0
    for c in range(n_classes):
        n_wait += show[classes[c]]
    available = n_dec + (e_li[a, L_SHOWN] if mem else e_li[a, L_PRE])
    pn[:] = 0
    # an external decision's caps (one batch): its token cap below the budget, and a budget
    # split (decode tokens first up to the cap, then prefill, then decode) where the
    # scheduler mixes prefill and decode
    limit = b
    if 0 <= e_li[a, L_TCAP] < b:
        limit = e_li[a, L_TCAP]
    split = e_li[a, L_DCAP]  # (dcap: the decode rings' capacity)
    sched = e_li[a, L_SCHED]
    chunked = e_li[a, L_CHUNKED] != 0
    e_li[a, L_TCAP] = -1
    e_li[a, L_DCAP] = -1
    if split >= 0 and sched >= ORCA:  # ORCA or SARATHI: they mix prefill and decode
        m = fill_decode(pl, pn, order, n_order, d_len, min(limit, split), kmax)
        b2, k2 = fill_prefill(
            pl, pn, order, n_order, q, q_head, show, j_tok, limit - m, kmax - m, chunked, limit
        )
        fill_decode(pl, pn, order, n_order, d_len, max(b2, 0), k2)
    else:
        fill(pl, pn, sched, chunked, order, n_order, q, q_head, show, d_len, j_tok, limit, kmax)
    x = pn[N_PN_X]
    m = pn[N_PN_M]
    n = x + m
    # work conservation, judged on the queues the batch was formed from
    nwc = False
    if n != b and n < available:
        w = 0
        if (
            n_wait >= kmax and n_dec + n_wait > kmax and not (available - n_dec) * kmax > n * n_wait
        ):  # the scan of not_work_conserving reads the prompts' lengths
            for c in range(n_classes):
                k = classes[c]
                h = q_head[k]
                for i in range(show[k]):
                    r_buf[w] = j_tok[q[k, (h + i) % qcap], T_PRE]
                    w += 1
        nwc = not_work_conserving(n, available, b, kmax, n_dec, n_wait, r_buf)
    if nwc:
        e_li[a, L_NWC] += 1
    if e_li[a, L_TABLE]:
        dt = e_table[a, n]
    else:
        kv_read = 0
        if e_li[a, L_KVM]:  # context read: continued prompts, and every decoder served
            for i in range(pn[N_PN_P]):
                k = pl[P_PK, i]
                head = q[k, q_head[k] % qcap]
                kv_read += j_tok[head, T_PROMPT] - j_tok[head, T_PRE]
            for i in range(pn[N_PN_D]):
                k = pl[P_DK, i]
                h = d_head[k]
                for r in range(pl[P_DM, i]):
                    s = d[k, (h + r) % dcap]
                    kv_read += j_tok[s, T_PROMPT] + j_tok[s, T_DEC] - j_tok[s, T_REM]
        dt = (
            e_lf[a, G_C] + e_lf[a, G_CP] * x + e_lf[a, G_CD] * m + e_lf[a, G_CKV] * kv_read
        ) / 1000.0
        top_n = e_li[a, L_MAXTOK]
        top_kv = e_li[a, L_MAXKV]
        if (top_n >= 0 and n > top_n) or (top_kv >= 0 and kv_read > top_kv):
            e_li[a, L_OOR] += 1
    if swap_s:
        dt += swap_s
    t_end = now + dt
    # KV cache: context held during the batch, then the batch's new tokens
    kv = e_li[a, L_KV]
    e_lf[a, G_KVAREA] += kv * dt
    kv += n
    if kv > e_li[a, L_KVMAX]:
        e_li[a, L_KVMAX] = kv
    # decode tokens; completions take effect when the batch ends
    blk = e_li[a, L_BLK]
    grown = 0
    nfin = 0
    for i in range(pn[N_PN_D]):
        k = pl[P_DK, i]
        mk = pl[P_DM, i]
        h = d_head[k]
        for r in range(mk):  # the first token of those served for the first time
            i2 = h + r
            if i2 >= dcap:
                i2 -= dcap
            s = d[k, i2]
            if mem and _full(j_tok[s, T_PROMPT] + j_tok[s, T_DEC] - j_tok[s, T_REM], blk):
                grown += 1  # its blocks are full: its token takes a new one
            if j_tok[s, T_REM] == j_tok[s, T_DEC] and j_arr[s] >= warmup:
                li = iv_log[0]
                l_code[li] = 2 * k + 1
                l_val[li] = t_end - j_arr[s]
                iv_log[0] = li + 1
        done = 0
        for r in range(mk):
            i2 = h + r
            if i2 >= dcap:
                i2 -= dcap
            s = d[k, i2]
            left = j_tok[s, T_REM] - 1
            j_tok[s, T_REM] = left
            if left == 0:
                e_fin[a, nfin] = s
                nfin += 1
                done += 1
                kv -= j_tok[s, T_PROMPT] + j_tok[s, T_DEC]  # a finished request frees it all
        if done:  # the survivors close up towards the tail, in order
            # the finished in request order (a request preempted and back decodes behind
            # younger ones)
            first = nfin - done
            for i2 in range(first + 1, nfin):
                s = e_fin[a, i2]
                j2 = i2 - 1
                while j2 >= first and j_id[e_fin[a, j2]] > j_id[s]:
                    e_fin[a, j2 + 1] = e_fin[a, j2]
                    j2 -= 1
                e_fin[a, j2 + 1] = s
            p = mk - 1
            for r in range(mk - 1, -1, -1):
                s = d[k, (h + r) % dcap]
                if j_tok[s, T_REM] != 0:
                    d[k, (h + p) % dcap] = s
                    p -= 1
            d_head[k] = (h + done) % dcap
            d_len[k] -= done
        work_left[k] -= mk
    e_li[a, L_KV] = kv
    e_li[a, L_NFIN] = nfin
    e_li[a, L_NDEC] -= nfin
    # prefill: whole prompts start decoding, a chunk goes to the next
    for i in range(pn[N_PN_P]):
        k = pl[P_PK, i]
        whole = pl[P_PW, i]
        chunk = pl[P_PC, i]
        if whole:
            for _ in range(whole):
                s = q[k, q_head[k]]
                q_head[k] = (q_head[k] + 1) % qcap
                q_len[k] -= 1
                if mem:  # the sums before the new head
                    qb[0, k], qb[1, k] = j_tok[s, T_CNEED], j_tok[s, T_CTOK]
                work_left[k] -= j_tok[s, T_PRE]
                if mem:
                    if j_tok[s, T_BLOCKS] == 0:
                        _admit(e_li, j_tok, a, s)
                    j_tok[s, T_HELD] += j_tok[s, T_PRE]
                j_tok[s, T_PRE] = 0
                d[k, (d_head[k] + d_len[k]) % dcap] = s
                d_len[k] += 1
            e_li[a, L_NWAIT] -= whole
            e_li[a, L_NDEC] += whole
        if chunk:
            head = q[k, q_head[k]]
            if mem:
                if j_tok[head, T_BLOCKS] == 0:
                    _admit(e_li, j_tok, a, head)
                j_tok[head, T_HELD] += chunk
            j_tok[head, T_PRE] -= chunk
            work_left[k] -= chunk
    if mem:
        if grown:
            _take_blocks(e_li, a, grown)
        # the cache during the batch: its allocations, before finished requests leave
        e_lf[a, G_MEMAREA] += (e_li[a, L_TOTAL] - e_li[a, L_FREE]) * blk * dt
        warm = t_end >= warmup
        for i in range(nfin):
            s = e_fin[a, i]
            held = j_tok[s, T_PROMPT] + j_tok[s, T_DEC]  # (as the decode queue writes it back)
            j_tok[s, T_HELD] = held
            j_tok[s, T_BLOCKS] = -(-held // blk)
            _release(e_li, j_tok, a, s)
            if warm:  # the requests completed, by how often they were preempted
                e_pc[a, j_tok[s, T_PREEMPTED]] += 1
    if x:
        e_li[a, L_PRE] -= x
    e_backlog[a] -= n
    e_done[a] += n
    e_batches[a] += 1
    e_li[a, L_TOKENS] += n
    if n == b:
        e_li[a, L_FULL] += 1
    e_lf[a, G_BTIME] += dt
    return t_end
