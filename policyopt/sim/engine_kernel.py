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
N_LI = 18
# float columns of e_lf: the affine model (ms), busy seconds, KV-token seconds
G_C, G_CP, G_CD, G_CKV, G_BTIME, G_KVAREA = 0, 1, 2, 3, 4, 5
N_LF = 6
# columns of j_tok: prefill tokens left, prompt tokens, decode tokens, decode tokens left
T_PRE, T_PROMPT, T_DEC, T_REM = 0, 1, 2, 3
N_TOK = 4
# the batch being formed: pl[P_DK], pl[P_DM]: decode (class, requests); pl[P_PK], pl[P_PW],
# pl[P_PC]: prefill (class, whole prompts, chunk tokens); pn: their counts, x and m
P_DK, P_DM, P_PK, P_PW, P_PC = 0, 1, 2, 3, 4
N_PN_D, N_PN_P, N_PN_X, N_PN_M = 0, 1, 2, 3


@njit(cache=True)
def fill_decode(pl, pn, order, n_order, d_len, budget, slots):
    """One decode token to each decoding request, classes in ``order``, while ``budget``
    tokens and ``slots`` last (``fill_decode``, first pass); returns the tokens taken."""
    if budget <= 0 or slots <= 0:
        return 0
    taken = 0
    for r in range(n_order):
        if budget <= 0 or slots <= 0:
            break
        k = order[r]
        nk = d_len[k]
        if nk == 0:
            continue
        mk = nk
        if budget < mk:
            mk = budget
        if slots < mk:
            mk = slots
        i = pn[N_PN_D]
        pl[P_DK, i] = k
        pl[P_DM, i] = mk
        pn[N_PN_D] = i + 1
        taken += mk
        budget -= mk
        slots -= mk
    pn[N_PN_M] += taken
    return taken


@njit(cache=True)
def fill_prefill(pl, pn, order, n_order, q, q_head, q_len, j_tok, budget, slots, chunked, whole_b):
    """Prefill tokens, classes in ``order``, first come first served within a class, whole
    prompts while they fit, then (``chunked``, or a prompt longer than the whole budget
    ``whole_b``) a chunk of the next; a whole prompt that does not fit stops all prefill
    (``fill_prefill``). Returns the ``(budget, slots)`` left."""
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
        for i in range(q_len[k]):
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
def fill(pl, pn, sched, chunked, order, n_order, q, q_head, q_len, d_len, j_tok, b, kmax):
    """The scheduler's rule (``Scheduler.fill`` of each of the four) into the empty plan."""
    if sched == FASTERTRANSFORMER:  # decode the running group, else admit the next
        for r in range(n_order):
            if d_len[order[r]]:
                fill_decode(pl, pn, order, n_order, d_len, b, kmax)
                return
        fill_prefill(pl, pn, order, n_order, q, q_head, q_len, j_tok, b, kmax, False, b)
    elif sched == VLLM:  # prefill-only batches while prompts wait, else decode-only
        for r in range(n_order):
            if q_len[order[r]]:
                fill_prefill(pl, pn, order, n_order, q, q_head, q_len, j_tok, b, kmax, False, b)
                return
        fill_decode(pl, pn, order, n_order, d_len, b, kmax)
    elif sched == ORCA:  # prefill first, then decode
        b2, k2 = fill_prefill(pl, pn, order, n_order, q, q_head, q_len, j_tok, b, kmax, chunked, b)
        fill_decode(pl, pn, order, n_order, d_len, b2, k2)
    else:  # SARATHI: decode first, then prefill
        m = fill_decode(pl, pn, order, n_order, d_len, b, kmax)
        fill_prefill(pl, pn, order, n_order, q, q_head, q_len, j_tok, b - m, kmax - m, chunked, b)


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
    if mode <= 1:  # SINGLE or FIXED: the order as it stands
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
            down = 0.0
            for s in range(p_ptr[k], p_ptr[k + 1]):
                down += p_prob[s] * jobs[p_succ[s]]
            key = p_neg[k] * (jobs[k] - down)
        else:  # LINEAR: -(a_k z_k + b_k)
            key = -(lin_a[k] * jobs[k] + lin_b[k])
        o_key[r] = key
    # by (key, class): insertion sort, few classes
    for i in range(1, n):
        k, key = o_buf[i], o_key[i]
        j = i - 1
        while j >= 0 and (o_key[j] > key or (o_key[j] == key and o_buf[j] > k)):
            o_buf[j + 1] = o_buf[j]
            o_key[j + 1] = o_key[j]
            j -= 1
        o_buf[j + 1] = k
        o_key[j + 1] = key
    return n


@njit(cache=True)
def form_batch(
    a, now, warmup, order, n_order, classes, n_classes, e_li, e_lf, e_table, e_fin, e_backlog,
    e_done, e_batches,
    q, q_head, q_len, d, d_head, d_len, j_tok, j_arr, work_left, pl, pn, r_buf, l_code, l_val,
    iv_log,
):  # fmt: skip
    """Form, apply and time engine ``a``'s next batch with class order ``order[:n_order]``
    (the engine has work; ``classes[:n_classes]``: the classes it serves); returns its end
    time (s). The requests that finish are left in
    ``e_fin[a]`` for the batch's end; per-class first-token times go to the log
    (``iv_log[0]`` entries so far)."""
    qcap = q.shape[1]
    dcap = d.shape[1]
    b = e_li[a, L_B]
    kmax = e_li[a, L_KMAX]
    n_dec = e_li[a, L_NDEC]
    n_wait = e_li[a, L_NWAIT]
    available = n_dec + e_li[a, L_PRE]
    pn[:] = 0
    fill(pl, pn, e_li[a, L_SCHED], e_li[a, L_CHUNKED] != 0, order, n_order, q, q_head, q_len,
         d_len, j_tok, b, kmax)  # fmt: skip
    x = pn[N_PN_X]
    m = pn[N_PN_M]
    n = x + m
    # work conservation, judged on the queues the batch was formed from
    nwc = False
    if n != b and n < available:
        w = 0
        if n_wait >= kmax and n_dec + n_wait > kmax:  # the prompts' lengths may be read
            for c in range(n_classes):
                k = classes[c]
                h = q_head[k]
                for i in range(q_len[k]):
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
    t_end = now + dt
    # KV cache: context held during the batch, then the batch's new tokens
    kv = e_li[a, L_KV]
    e_lf[a, G_KVAREA] += kv * dt
    kv += n
    if kv > e_li[a, L_KVMAX]:
        e_li[a, L_KVMAX] = kv
    # decode tokens; completions take effect when the batch ends
    nfin = 0
    for i in range(pn[N_PN_D]):
        k = pl[P_DK, i]
        mk = pl[P_DM, i]
        h = d_head[k]
        for r in range(mk):  # the first token of those served for the first time
            s = d[k, (h + r) % dcap]
            if j_tok[s, T_REM] == j_tok[s, T_DEC] and j_arr[s] >= warmup:
                li = iv_log[0]
                l_code[li] = 2 * k + 1
                l_val[li] = t_end - j_arr[s]
                iv_log[0] = li + 1
        done = 0
        for r in range(mk):
            s = d[k, (h + r) % dcap]
            left = j_tok[s, T_REM] - 1
            j_tok[s, T_REM] = left
            if left == 0:
                e_fin[a, nfin] = s
                nfin += 1
                done += 1
                kv -= j_tok[s, T_PROMPT] + j_tok[s, T_DEC]  # a finished request frees it all
        if done:  # the survivors close up towards the tail, in order
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
                work_left[k] -= j_tok[s, T_PRE]
                j_tok[s, T_PRE] = 0
                j_tok[s, T_REM] = j_tok[s, T_DEC]
                d[k, (d_head[k] + d_len[k]) % dcap] = s
                d_len[k] += 1
            e_li[a, L_NWAIT] -= whole
            e_li[a, L_NDEC] += whole
        if chunk:
            head = q[k, q_head[k]]
            j_tok[head, T_PRE] -= chunk
            work_left[k] -= chunk
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
