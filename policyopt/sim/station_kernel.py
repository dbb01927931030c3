"""The compiled event loop of a network of stations and LLM engines (numba).

:func:`run_stations` is :meth:`NetworkSimulator._loop <policyopt.sim.network_sim.
NetworkSimulator._loop>`, restricted to what :mod:`policyopt.sim.compiled_loop` hands it:
stations (one or several servers, preemptive-resume or not) and LLM engines
(:mod:`policyopt.sim.engine_kernel`), every class served at one engine, fixed or random
routing to the next class, out of the network or to a join, forks (records of the branches
not yet joined), and a policy in one of five forms (:data:`SINGLE`, :data:`FIXED`,
:data:`FCFS`, :data:`PRESSURE`, :data:`LINEAR`), or, in external mode (:data:`EXTERNAL`),
the orders Python gives at each decision (:func:`resume` re-enters the loop there).
It performs the same floating-point operations in the same order, so its results are the
Python loop's, bit for bit (``tests/test_compiled_loop.py`` checks it).

The state lives in numpy arrays (:class:`~policyopt.sim.compiled_loop.LoopState` names them).
The kernel returns to Python, with the state consistent, whenever Python must act (a ``STOP_*``
code): a block of random draws ran out, a log filled up, a buffer must grow, the statistics are
due (warm-up end, a sample, a batch-means window edge), progress is to be shown, or the horizon
is reached. Random draws come from Python in blocks (one stream per workflow, per class and for
routing, as in the Python loop), so which numbers a run uses does not depend on the loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from policyopt.sim.engine_kernel import (
    G_SWAP_S,
    L_BLK,
    L_FREE,
    L_MEM,
    L_NDEC,
    L_NFIN,
    L_NSWAP,
    L_NWAIT,
    L_PCWIDE,
    L_PRE,
    L_SHEAD,
    L_TOTAL,
    T_BLOCKS,
    T_DEC,
    T_HELD,
    T_PRE,
    T_PREEMPTED,
    T_PROMPT,
    T_REM,
    engine_order,
    form_batch,
    make_room,
    pressure_key,
    queued,
    sort_by_key,
)

# event kinds (as in network_sim)
ARRIVAL, DONE = 0, 1
# how a station orders its classes
SINGLE, FIXED, FCFS, PRESSURE, LINEAR = 0, 1, 2, 3, 4
# external mode: Python gives the order (in ``e_order``) at each decision that needs one
EXTERNAL = 5
# where a class's jobs go next: a class index (>= 0), or
EXIT, JOIN, RANDOM, FORK = -1, -2, -3, -4
# why the kernel returned
STOP_END, STOP_REFILL, STOP_LOGS, STOP_GROW, STOP_BOOKKEEP, STOP_PROGRESS = 0, 1, 2, 3, 4, 5
STOP_DECIDE = 6  # external mode: engine iv[I_PENDING] must decide (its order in e_order)
# integer scalars (``iv``)
I_SEQ, I_NEXT_ID, I_CREATED, I_DECISIONS, I_HEAP_N, I_DQ_HEAD, I_DQ_LEN = 0, 1, 2, 3, 4, 5, 6
I_LOG_N, I_FLOW_N, I_FREE_N, I_TICK, I_KEPT = 7, 8, 9, 10, 11
I_UNI_POS, I_EMPTY, I_GROW, I_STAMP = 12, 13, 14, 15
# an LLM batch's end in progress: its engine (-1: none) and the next finished request
I_FIN_A, I_FIN_I = 16, 17
I_NSAMPLE = 18  # the next sample of the series (taken here; F_T_SAMPLE: its time)
# external mode: the engine asked to decide (-1: none); what Python gave (0: nothing yet, 1:
# the order in e_order, 2: the class served first, I_FIRST, the others by maximum pressure);
# whether the decisions where at most one class has work are taken without asking (1)
I_PENDING, I_GIVEN, I_SKIP, I_FIRST = 19, 20, 21, 22
I_KFREE_N = 23  # fork records free (k_free)
N_IV = 24
# float scalars (``fv``)
F_NOW, F_T_CHECK, F_HORIZON, F_WARMUP, F_BOOK_T, F_T_SAMPLE = 0, 1, 2, 3, 4, 5
N_FV = 6


@njit(cache=True, inline="always")
def _less(ht, hk, hs, i, j):
    """Heap entry ``i`` before entry ``j``: by time, kind, then sequence number (unique)."""
    if ht[i] != ht[j]:
        return ht[i] < ht[j]
    if hk[i] != hk[j]:
        return hk[i] < hk[j]
    return hs[i] < hs[j]


@njit(cache=True)
def _swap(ht, hk, hs, ha, hj, i, j):
    ht[i], ht[j] = ht[j], ht[i]
    hk[i], hk[j] = hk[j], hk[i]
    hs[i], hs[j] = hs[j], hs[i]
    ha[i], ha[j] = ha[j], ha[i]
    hj[i], hj[j] = hj[j], hj[i]


@njit(cache=True)
def _sift_down(ht, hk, hs, ha, hj, n, i):
    while True:
        c = 2 * i + 1
        if c >= n:
            return
        if c + 1 < n and _less(ht, hk, hs, c + 1, c):
            c += 1
        if _less(ht, hk, hs, c, i):
            _swap(ht, hk, hs, ha, hj, i, c)
            i = c
        else:
            return


@njit(cache=True)
def _push(ht, hk, hs, ha, hj, iv, t, kind, seq, a, job):
    """Push event ``(t, kind, seq, a, job)`` (the caller made room)."""
    i = iv[I_HEAP_N]
    iv[I_HEAP_N] = i + 1
    ht[i], hk[i], hs[i], ha[i], hj[i] = t, kind, seq, a, job
    while i > 0:
        p = (i - 1) // 2
        if _less(ht, hk, hs, i, p):
            _swap(ht, hk, hs, ha, hj, i, p)
            i = p
        else:
            return


@njit(cache=True)
def _pop(ht, hk, hs, ha, hj, iv):
    """Drop the first event."""
    n = iv[I_HEAP_N] - 1
    iv[I_HEAP_N] = n
    if n > 0:
        ht[0], hk[0], hs[0], ha[0], hj[0] = ht[n], hk[n], hs[n], ha[n], hj[n]
        _sift_down(ht, hk, hs, ha, hj, n, 0)


@njit(cache=True)
def _replace(ht, hk, hs, ha, hj, iv, t, kind, seq, a, job):
    """Drop the first event and push ``(t, kind, seq, a, job)`` (``heapq.heapreplace``)."""
    ht[0], hk[0], hs[0], ha[0], hj[0] = t, kind, seq, a, job
    _sift_down(ht, hk, hs, ha, hj, iv[I_HEAP_N], 0)


@njit(cache=True)
def _queue_remove(q, q_head, q_len, k, slot):
    """Take ``slot`` out of class ``k``'s queue, keeping the others' order (the jobs ahead of
    it move back by one: a job in service is near the head)."""
    cap = q.shape[1]
    h = q_head[k]
    p = 0
    while q[k, (h + p) % cap] != slot:
        p += 1
    while p > 0:
        q[k, (h + p) % cap] = q[k, (h + p - 1) % cap]
        p -= 1
    q_head[k] = (h + 1) % cap
    q_len[k] -= 1


@njit(cache=True)
def _serving_remove(e_serving, e_nserv, a, slot):
    """Take ``slot`` out of station ``a``'s jobs in service, keeping their order."""
    n = e_nserv[a]
    p = 0
    while e_serving[a, p] != slot:
        p += 1
    for i in range(p, n - 1):
        e_serving[a, i] = e_serving[a, i + 1]
    e_nserv[a] = n - 1


@njit(cache=True)
def _raise_decision(dq, iv, e_pending, e):
    """Station ``e``'s decision is due now: it joins the decision queue (a ring)."""
    e_pending[e] = True
    dq[(iv[I_DQ_HEAD] + iv[I_DQ_LEN]) % dq.shape[0]] = e
    iv[I_DQ_LEN] += 1


@njit(cache=True)
def _stop(
    j_since, j_ver, j_left, j_cls, work_left, e_backlog, e_done, e_serving, e_nserv, a, slot, now
):
    """Job ``slot`` leaves its server at station ``a`` now (preempted, or done: the caller
    then takes it out of its queue), with the work it got since it started
    (``NetworkSimulator._multi_stop``)."""
    used = now - j_since[slot]
    j_left[slot] -= used
    j_ver[slot] = 0
    work_left[j_cls[slot]] -= used
    e_backlog[a] -= used
    e_done[a] += used
    _serving_remove(e_serving, e_nserv, a, slot)


@njit(cache=True)
def _start(ht, hk, hs, ha, hj, iv, j_since, j_ver, j_left, e_serving, e_nserv, a, slot, now):
    """Job ``slot`` takes a free server of station ``a`` (several servers) now."""
    nseq = iv[I_SEQ] + 1
    iv[I_SEQ] = nseq
    j_since[slot] = now
    j_ver[slot] = nseq
    e_serving[a, e_nserv[a]] = slot
    e_nserv[a] += 1
    _push(ht, hk, hs, ha, hj, iv, now + j_left[slot], DONE, nseq, a, slot)


@njit(cache=True, inline="always")
def _route(k, iv, u_buf, block, r_ptr, r_tgt, r_prob):
    """Where a job of class ``k`` goes at random: the next routing draw against the
    cumulative probabilities (the last target if the sum falls short)."""
    pos = iv[I_UNI_POS]
    u = u_buf[pos]
    iv[I_UNI_POS] = pos + 1
    if pos + 1 == block:
        iv[I_EMPTY] = 1
    acc = 0.0
    target = r_tgt[r_ptr[k + 1] - 1]
    for r in range(r_ptr[k], r_ptr[k + 1]):
        acc += r_prob[r]
        if u < acc:
            return r_tgt[r]
    return target


@njit(cache=True)
def _sample(t, iv, fv, sample_t, sample_jobs, sample_backlog, sample_mem, jobs, e_backlog, e_li):
    """Take the samples due before time ``t`` (``NetworkSimulator._bookkeep``): jobs in the
    network, each engine's backlog and (a KV cache) tokens allocated."""
    n = sample_t.shape[0]
    i = iv[I_NSAMPLE]
    while i < n and sample_t[i] < t:
        total = 0.0
        for k in range(jobs.shape[0]):
            total += jobs[k]  # whole numbers: exact in any order
        sample_jobs[i] = total
        for e in range(e_backlog.shape[0]):
            sample_backlog[e, i] = e_backlog[e]
            if e_li[e, L_MEM]:
                sample_mem[e, i] = (e_li[e, L_TOTAL] - e_li[e, L_FREE]) * e_li[e, L_BLK]
        i += 1
    iv[I_NSAMPLE] = i
    fv[F_T_SAMPLE] = sample_t[i] if i < n else np.inf


@njit(cache=True)
def _ask(a, iv, e_llm, e_li, e_order, e_norder, e_cls, q_len, d_len, o_buf, o_key, pt):
    """External mode, engine ``a`` at a decision epoch: ``True`` when Python must give its
    order first (the kernel then returns :data:`STOP_DECIDE` with the state as it is, and
    resumes here); ``False`` when the kernel goes on with the order in ``e_order``: Python gave
    it (with ``iv[I_GIVEN] == 2``, its first class: the others follow by maximum pressure,
    ``pt``: ``(jobs, p_neg, p_ptr, p_succ, p_prob)``, ties by class index), the LLM engine has
    nothing to batch (it idles, as without a decision), or, with ``iv[I_SKIP]``, at most one
    class has work there (every order decides the same)."""
    given = iv[I_GIVEN]
    if given != 0 and iv[I_PENDING] == a:
        iv[I_GIVEN] = 0
        iv[I_PENDING] = -1
        if given == 2:
            jobs, p_neg, p_ptr, p_succ, p_prob = pt
            n = e_norder[a]
            for r in range(n):
                k = e_cls[a, r]
                o_buf[r] = k
                o_key[r] = pressure_key(k, jobs, p_neg, p_ptr, p_succ, p_prob)
            sort_by_key(o_buf, o_key, n)
            first = iv[I_FIRST]
            e_order[a, 0] = first
            m = 1
            for r in range(n):
                if o_buf[r] != first:
                    e_order[a, m] = o_buf[r]
                    m += 1
        return False
    llm = e_llm[a]
    swapped = e_li[a, L_MEM] != 0 and e_li[a, L_SHEAD] >= 0  # (swapped out: work too)
    if llm and e_li[a, L_NDEC] == 0 and e_li[a, L_NWAIT] == 0 and not swapped:
        return False
    if iv[I_SKIP] != 0:
        seen = 0
        for r in range(e_norder[a]):
            k = e_cls[a, r]
            if q_len[k] > 0 or (llm and d_len[k] > 0):
                seen += 1
        if seen <= 1:  # every order decides the same: the engine's classes in index order
            for r in range(e_norder[a]):
                e_order[a, r] = e_cls[a, r]
            return False
    iv[I_PENDING] = a
    return True


@njit(cache=True)
def _llm_start(a, now, warmup, iv, lt):
    """LLM engine ``a`` is free: its next batch starts now, or it idles without work
    (``NetworkSimulator._form_batch``); ``lt``: the arrays it reads and writes (see
    :func:`run_stations`)."""
    ht, hk, hs, ha, hj, e_busy, e_mode, e_order, e_norder, e_single, e_cls, e_ncls = lt[:12]
    e_li, e_lf, e_table, e_fin, e_backlog, e_done, e_batches, q, q_head, q_len = lt[12:22]
    d, d_head, d_len, j_tok, j_arr, work_left, jobs, p_neg, p_ptr, p_succ = lt[22:32]
    p_prob, lin_a, lin_b, o_buf, o_key, pl, pn, r_buf, l_code, l_val, iv_log = lt[32:43]
    j_cls, sh, e_arrived, j_id, qb, e_pc = lt[43:]
    mem = e_li[a, L_MEM] != 0
    if e_li[a, L_NDEC] == 0 and e_li[a, L_NWAIT] == 0 and not (mem and e_li[a, L_SHEAD] >= 0):
        e_busy[a] = False
        return
    n = engine_order(
        a, o_buf, o_key, e_mode, e_order, e_norder, q, q_head, q_len, d, d_head, d_len, j_arr,
        jobs, p_neg, p_ptr, p_succ, p_prob, lin_a, lin_b,
    )  # fmt: skip
    if not e_single[a] or e_mode[a] == EXTERNAL:  # (a one-class engine asked: ask_single)
        iv[I_DECISIONS] += 1
    show = q_len
    swap_s = 0.0
    if mem:  # preempt to make room, then show the prompts that may be admitted
        moved = make_room(
            a, o_buf, n, e_cls[a], e_ncls[a], e_li, j_tok, j_cls, q, q_head, q_len, d, d_head,
            d_len, sh, work_left, e_backlog, e_arrived, qb, e_pc,
        )  # fmt: skip
        if e_li[a, L_PCWIDE]:
            e_li[a, L_PCWIDE] = 0
            iv[I_GROW] = 1
        shown = 0
        for c in range(e_ncls[a]):
            shown += sh[e_cls[a, c]]
        if e_li[a, L_NDEC] == 0 and shown == 0:  # the rule holds every prompt back: idle
            e_busy[a] = False
            return
        show = sh
        swap_s = moved * e_lf[a, G_SWAP_S]
    iv_log[0] = iv[I_LOG_N]
    t_end = form_batch(
        a, now, warmup, o_buf, n, e_cls[a], e_ncls[a], e_li, e_lf, e_table, e_fin, e_backlog,
        e_done, e_batches, q, q_head, q_len, show, d, d_head, d_len, j_tok, j_arr, j_id, work_left,
        pl, pn, r_buf, l_code, l_val, iv_log, swap_s, qb, e_pc,
    )  # fmt: skip
    iv[I_LOG_N] = iv_log[0]
    # room in the rings for the class's jobs here (waiting, decoding, swapped out: one may
    # become the other), and a batch's more
    cap = min(d.shape[1], q.shape[1])
    room = e_fin.shape[1] + e_li[a, L_NSWAP] + 1
    for c in range(e_ncls[a]):
        k = e_cls[a, c]
        if q_len[k] + d_len[k] + room >= cap:
            iv[I_GROW] = 1
    e_busy[a] = True
    nseq = iv[I_SEQ] + 1
    iv[I_SEQ] = nseq
    _push(ht, hk, hs, ha, hj, iv, t_end, DONE, nseq, a, -1)


@njit(cache=True)
def run_stations(
    iv,
    fv,
    # events: time, kind, sequence number, workflow or station, job slot (-1: none)
    ht,
    hk,
    hs,
    ha,
    hj,
    dq,  # stations whose decision is due now, a ring of capacity J
    # stations
    e_current,
    e_started,
    e_version,
    e_backlog,
    e_done,
    e_arrived,
    e_batches,
    e_pending,
    e_busy,
    e_preempts,
    e_single,
    e_multi,  # several servers: the jobs in service are e_serving[a, :e_nserv[a]]
    e_servers,
    e_serving,
    e_nserv,
    e_mode,
    e_order,
    e_norder,
    e_hasrank,
    e_rank,
    # jobs (slots) and the free slots
    j_cls,
    j_arr,
    j_fid,
    j_ft0,
    j_fw,
    j_left,
    j_id,
    j_since,  # (several servers) when the job's service (re)started
    j_ver,  # (several servers) the number of its completion event (0: none)
    mark,  # per slot: the stamp of the last decision that marked it
    j_fork,  # per slot: the fork record the job is in (-1: none)
    free,
    # forks in progress (records): branches not yet joined, the join class, the enclosing
    # record, the fork's number; the free records
    k_left,
    k_join,
    k_parent,
    k_fid,
    k_free,
    # class queues (rings), per-class statistics and routing
    q,
    q_head,
    q_len,
    work_left,
    last,
    area,
    jobs,
    done_class,
    next_of,
    r_ptr,
    r_tgt,
    r_prob,
    f_ptr,  # forks: each class's branch classes (CSR), and its join class
    f_tgt,
    f_join,
    entries,
    engine_of,
    # draws: per workflow (gaps; a_gap > 0: deterministic), per class (work), routing
    a_gap,
    a_buf,
    a_pos,
    w_buf,
    w_pos,
    u_buf,
    # logs: per-class times (code, seconds) and finished workflows (index, arrival, exit)
    l_code,
    l_val,
    f_w,
    f_t0,
    f_left,
    # the pressure form: -r_k (weighted), successors (CSR), positive pressures only
    p_neg,
    p_ptr,
    p_succ,
    p_prob,
    p_positive,
    # the linear form: index a_k z_k + b_k
    lin_a,
    lin_b,
    o_buf,  # scratch: a class order, its keys, jobs chosen, jobs in service
    o_key,
    c_buf,
    s_buf,
    # LLM engines (policyopt.sim.engine_kernel): which engines, their state, their classes,
    # the requests' tokens, the decode rings, token draws, the batch being formed, scratch
    e_llm,
    e_li,
    e_lf,
    e_table,
    e_fin,
    e_cls,
    e_ncls,
    j_tok,
    d,
    d_head,
    d_len,
    wp_buf,
    wd_buf,
    pl,
    pn,
    r_buf,
    iv_log,
    sh,
    qb,
    e_pc,
    # the sampled series (policyopt.sim.network_sim: sample_t, sample_jobs, ...)
    sample_t,
    sample_jobs,
    sample_backlog,
    sample_mem,
    every,
    progress_every,
):
    """Run events until Python must act; returns a ``STOP_*`` code (see the module)."""
    horizon = fv[F_HORIZON]
    warmup = fv[F_WARMUP]
    t_check = fv[F_T_CHECK]
    now = fv[F_NOW]
    n_st = e_current.shape[0]
    qcap = q.shape[1]
    lcap = l_code.shape[0]
    block = a_buf.shape[1]
    hcap = ht.shape[0] - e_serving.shape[1]  # a decision may start every server
    # an LLM batch may log a first token for e_fin.shape[1] requests
    lroom = lcap - e_fin.shape[1] - 1
    # a fork starts a job on each branch at once: room for the widest
    forks = k_free.shape[0] > 0  # (records only where a class forks)
    fwidth = 1
    for k in range(f_ptr.shape[0] - 1):
        fwidth = max(fwidth, f_ptr[k + 1] - f_ptr[k])
    qroom = e_fin.shape[1] - 1 + fwidth - 1  # 0 in a network of stations without forks
    # what an LLM engine's batch start reads and writes (one argument: few to pass)
    lt = (
        ht, hk, hs, ha, hj, e_busy, e_mode, e_order, e_norder, e_single, e_cls, e_ncls,
        e_li, e_lf, e_table, e_fin, e_backlog, e_done, e_batches, q, q_head, q_len,
        d, d_head, d_len, j_tok, j_arr, work_left, jobs, p_neg, p_ptr, p_succ,
        p_prob, lin_a, lin_b, o_buf, o_key, pl, pn, r_buf, l_code, l_val, iv_log,
        j_cls, sh, e_arrived, j_id, qb, e_pc,
    )  # fmt: skip
    pt = (jobs, p_neg, p_ptr, p_succ, p_prob)  # the pressure form (external mode's orders)
    while True:
        fv[F_NOW] = now
        # room for this step: draws, logs, buffers
        if iv[I_EMPTY] != 0:
            return STOP_REFILL
        if iv[I_LOG_N] >= lroom or iv[I_FLOW_N] >= lroom:
            return STOP_LOGS
        if (
            iv[I_GROW] != 0
            or iv[I_HEAP_N] + 4 > hcap
            or iv[I_FREE_N] < fwidth
            or (iv[I_KFREE_N] == 0 and forks)
        ):
            iv[I_GROW] = 1
            return STOP_GROW
        if progress_every > 0 and iv[I_TICK] >= progress_every:
            iv[I_TICK] = 0
            return STOP_PROGRESS
        n_heap = iv[I_HEAP_N]
        a = -1
        station = -1
        if iv[I_FIN_A] < 0 and iv[I_DQ_LEN] > 0 and (n_heap == 0 or ht[0] > now):
            # a decision due now, and no other event left at this instant
            if now >= horizon:
                break
            a = dq[iv[I_DQ_HEAD]]
            if e_mode[a] == EXTERNAL and not (e_llm[a] and e_busy[a]) and _ask(
                a, iv, e_llm, e_li, e_order, e_norder, e_cls, q_len, d_len, o_buf, o_key,
                pt,
            ):  # fmt: skip
                return STOP_DECIDE
            iv[I_DQ_HEAD] = (iv[I_DQ_HEAD] + 1) % n_st
            iv[I_DQ_LEN] -= 1
            e_pending[a] = False
            if e_llm[a]:
                if not e_busy[a]:
                    _llm_start(a, now, warmup, iv, lt)
                continue
        else:
            if iv[I_FIN_A] >= 0:
                # an LLM batch ended at `now`: its next finished request goes on (its
                # workflow's next class, or out), or, all gone, the engine's next batch starts
                a = iv[I_FIN_A]
                i = iv[I_FIN_I]
                if i == e_li[a, L_NFIN]:
                    if e_mode[a] == EXTERNAL and _ask(
                        a, iv, e_llm, e_li, e_order, e_norder, e_cls, q_len, d_len, o_buf,
                        o_key, pt,
                    ):  # fmt: skip
                        return STOP_DECIDE
                    iv[I_FIN_A] = -1
                    e_li[a, L_NFIN] = 0
                    _llm_start(a, now, warmup, iv, lt)
                    continue
                iv[I_FIN_I] = i + 1
                t = now
                slot = e_fin[a, i]
                # (the steps of a station's completion below, written out again: a compiled
                # helper shared by both costs the station loop a fifth of its speed)
                k = j_cls[slot]
                lo = last[k]
                if lo < warmup:
                    lo = warmup
                n = jobs[k]
                if t > lo:
                    area[k] += n * (t - lo)
                last[k] = t
                jobs[k] = n - 1.0
                if t >= warmup:
                    done_class[k] += 1
                arrived = j_arr[slot]
                if arrived >= warmup:
                    i = iv[I_LOG_N]
                    l_code[i] = 2 * k
                    l_val[i] = t - arrived
                    iv[I_LOG_N] = i + 1
                target = next_of[k]
                if target == RANDOM:
                    target = _route(k, iv, u_buf, block, r_ptr, r_tgt, r_prob)
                fid, ft0, fw = j_fid[slot], j_ft0[slot], j_fw[slot]
                nk = -1
                spread = 0
                from_k = -1
                in_fork = j_fork[slot]
                if target >= 0:
                    nk = target
                elif target == EXIT:
                    i = iv[I_FLOW_N]
                    f_w[i] = fw
                    f_t0[i] = ft0
                    f_left[i] = t
                    iv[I_FLOW_N] = i + 1
                else:  # FORK or JOIN: below, where jobs start
                    spread = target
                    from_k = k
                free[iv[I_FREE_N]] = slot
                iv[I_FREE_N] += 1
            else:
                if n_heap == 0:
                    break
                t = ht[0]
                if t >= horizon:
                    break
                if t > fv[F_T_SAMPLE]:  # samples of the series due before this event
                    _sample(t, iv, fv, sample_t, sample_jobs, sample_backlog, sample_mem,
                            jobs, e_backlog, e_li)  # fmt: skip
                if t >= t_check and iv[I_KEPT] == 0:
                    # the other statistics are due before this event (warm-up end, a window
                    # edge): Python does them
                    iv[I_KEPT] = 1
                    fv[F_BOOK_T] = t
                    return STOP_BOOKKEEP
                iv[I_KEPT] = 0
                kind, seq, a, slot = hk[0], hs[0], ha[0], hj[0]
                if kind == ARRIVAL and a_gap[a] <= 0.0:
                    # the workflow's next arrival takes this one's place
                    pos = a_pos[a]
                    gap = a_buf[a, pos]
                    a_pos[a] = pos + 1
                    if pos + 1 == block:
                        iv[I_EMPTY] = 1
                    nseq = iv[I_SEQ] + 1
                    iv[I_SEQ] = nseq
                    _replace(ht, hk, hs, ha, hj, iv, t + gap, ARRIVAL, nseq, a, -1)
                else:
                    _pop(ht, hk, hs, ha, hj, iv)
                now = t
                nk = -1
                spread = 0
                from_k = -1
                in_fork = -1
                fid = 0
                ft0 = 0.0
                fw = 0
                if kind == DONE and e_llm[a]:
                    # a batch ends: its finished requests go on, one per pass (below), then
                    # the engine's next batch starts
                    e_busy[a] = False
                    iv[I_FIN_A] = a
                    iv[I_FIN_I] = 0
                    continue
                if kind == DONE:
                    if e_multi[a]:
                        if j_ver[slot] != seq:
                            continue  # preempted: a stale completion
                        k = j_cls[slot]
                        _stop(
                            j_since,
                            j_ver,
                            j_left,
                            j_cls,
                            work_left,
                            e_backlog,
                            e_done,
                            e_serving,
                            e_nserv,
                            a,
                            slot,
                            t,
                        )
                        _queue_remove(q, q_head, q_len, k, slot)
                    else:
                        if seq != e_version[a]:
                            continue  # preempted: a stale completion
                        used = t - e_started[a]
                        k = j_cls[slot]
                        work_left[k] -= used
                        e_backlog[a] -= used
                        e_done[a] += used
                        e_current[a] = -1
                        q_head[k] = (q_head[k] + 1) % qcap
                        q_len[k] -= 1
                    e_busy[a] = False
                    e_batches[a] += 1
                    station = a
                    lo = last[k]
                    if lo < warmup:
                        lo = warmup
                    n = jobs[k]
                    if t > lo:
                        area[k] += n * (t - lo)
                    last[k] = t
                    jobs[k] = n - 1.0
                    if t >= warmup:
                        done_class[k] += 1
                    arrived = j_arr[slot]
                    if arrived >= warmup:
                        i = iv[I_LOG_N]
                        l_code[i] = 2 * k
                        l_val[i] = t - arrived
                        iv[I_LOG_N] = i + 1
                    target = next_of[k]
                    if target == RANDOM:
                        target = _route(k, iv, u_buf, block, r_ptr, r_tgt, r_prob)
                    fid, ft0, fw = j_fid[slot], j_ft0[slot], j_fw[slot]
                    in_fork = j_fork[slot]
                    if target >= 0:
                        nk = target
                    elif target == EXIT:
                        i = iv[I_FLOW_N]
                        f_w[i] = fw
                        f_t0[i] = ft0
                        f_left[i] = t
                        iv[I_FLOW_N] = i + 1
                    else:  # FORK or JOIN: below, where jobs start
                        spread = target
                        from_k = k
                    free[iv[I_FREE_N]] = slot
                    iv[I_FREE_N] += 1
                else:  # ARRIVAL
                    fid = iv[I_NEXT_ID]
                    iv[I_NEXT_ID] = fid + 1
                    ft0 = t
                    fw = a
                    nk = entries[a]
                    if a_gap[a] > 0.0:  # deterministic arrivals
                        nseq = iv[I_SEQ] + 1
                        iv[I_SEQ] = nseq
                        _push(ht, hk, hs, ha, hj, iv, now + a_gap[a], ARRIVAL, nseq, a, -1)
            n_new = 1 if nk >= 0 else 0
            if spread == FORK:  # one job to each class of the fork, numbered as a job
                nf = iv[I_KFREE_N] - 1
                iv[I_KFREE_N] = nf
                rec = k_free[nf]
                n_new = f_ptr[from_k + 1] - f_ptr[from_k]
                k_left[rec] = n_new
                k_join[rec] = f_join[from_k]
                k_parent[rec] = in_fork
                k_fid[rec] = iv[I_NEXT_ID]
                iv[I_NEXT_ID] += 1
                in_fork = rec
            elif spread == JOIN:  # the fork's last branch in starts its join class
                rec = in_fork
                k_left[rec] -= 1
                if k_left[rec] == 0:
                    k_free[iv[I_KFREE_N]] = rec
                    iv[I_KFREE_N] += 1
                    nk = k_join[rec]
                    in_fork = k_parent[rec]
                    n_new = 1
            for s_new in range(n_new):
                if spread == FORK:
                    nk = f_tgt[f_ptr[from_k] + s_new]
                # a job of class nk starts at its engine
                j = engine_of[nk]
                jid = iv[I_NEXT_ID]
                iv[I_NEXT_ID] = jid + 1
                iv[I_CREATED] += 1
                pos = w_pos[nk]
                work = w_buf[nk, pos]
                w_pos[nk] = pos + 1
                if pos + 1 == block:
                    iv[I_EMPTY] = 1
                nf = iv[I_FREE_N] - 1
                iv[I_FREE_N] = nf
                slot = free[nf]
                queue_joined = False
                if e_llm[j]:  # a request: its prompt and output tokens
                    p = wp_buf[nk, pos]
                    dtok = wd_buf[nk, pos]
                    work = float(p + dtok)
                    j_tok[slot, T_PRE] = p
                    j_tok[slot, T_PROMPT] = p
                    j_tok[slot, T_DEC] = dtok
                    j_tok[slot, T_REM] = dtok
                    j_tok[slot, T_HELD] = 0
                    j_tok[slot, T_BLOCKS] = 0
                    j_tok[slot, T_PREEMPTED] = 0
                    e_li[j, L_PRE] += p
                    e_li[j, L_NWAIT] += 1
                    queue_joined = e_li[j, L_MEM] != 0
                j_cls[slot] = nk
                j_arr[slot] = t
                j_fid[slot] = fid
                j_ft0[slot] = ft0
                j_fw[slot] = fw
                j_left[slot] = work
                j_id[slot] = jid
                j_ver[slot] = 0
                j_fork[slot] = in_fork
                e_backlog[j] += work
                e_arrived[j] += work
                work_left[nk] += work
                ln = q_len[nk]
                q[nk, (q_head[nk] + ln) % qcap] = slot
                q_len[nk] = ln + 1
                if queue_joined:  # a KV cache's admission sums
                    queued(e_li, j_tok, qb, q, q_head, q_len, j, nk, slot)
                if ln + 1 + d_len[nk] + qroom + e_li[j, L_NSWAP] >= qcap:  # (LLM: see grow)
                    iv[I_GROW] = 1
                lo = last[nk]
                if lo < warmup:
                    lo = warmup
                n = jobs[nk]
                if t > lo:
                    area[nk] += n * (t - lo)
                last[nk] = t
                jobs[nk] = n + 1.0
                if not e_pending[j] and not e_busy[j]:
                    cur = e_current[j]
                    if cur >= 0 and e_hasrank[j] and e_rank[j, nk] >= e_rank[j, j_cls[cur]]:
                        # behind the job in service in a fixed order: nothing changes
                        if not e_single[j]:
                            iv[I_DECISIONS] += 1
                    else:
                        _raise_decision(dq, iv, e_pending, j)
            iv[I_TICK] += 1
            if every:
                for e in range(n_st):
                    if not e_pending[e] and not e_busy[e]:
                        _raise_decision(dq, iv, e_pending, e)
            if station < 0:
                continue
            if e_pending[station]:
                continue
            if iv[I_DQ_LEN] > 0 or (iv[I_HEAP_N] > 0 and ht[0] <= t):
                # other events at this instant, or decisions raised before: it waits
                _raise_decision(dq, iv, e_pending, station)
                continue
            if e_mode[station] == EXTERNAL:  # Python decides: the kernel stops at the queue
                _raise_decision(dq, iv, e_pending, station)
                continue
            a = station  # nothing else happens at this instant: it decides now
        # station a decides: serve the first class of its order with a waiting job
        mode = e_mode[a]
        if mode == EXTERNAL:  # the order Python gave (or the engine's own, see _ask)
            mode = FIXED
        if e_multi[a]:
            # several servers: the class order, then the first jobs of it
            if mode != SINGLE:
                iv[I_DECISIONS] += 1
            n = 0
            for r in range(e_norder[a]):
                k = e_order[a, r]
                if q_len[k] == 0:
                    continue
                if mode == FCFS:  # by each class's oldest job
                    key = j_arr[q[k, q_head[k]]]
                elif mode >= PRESSURE:  # PRESSURE or LINEAR
                    if mode == PRESSURE:
                        key = pressure_key(k, jobs, p_neg, p_ptr, p_succ, p_prob)
                        if p_positive and not key < 0.0:
                            continue
                    else:
                        key = -(lin_a[k] * jobs[k] + lin_b[k])
                else:  # the order as it stands
                    key = float(r)
                o_buf[n] = k
                o_key[n] = key
                n += 1
            if mode >= FCFS:
                sort_by_key(o_buf, o_key, n)
            c = e_servers[a]
            iv[I_STAMP] += 1
            stamp = iv[I_STAMP]
            if e_preempts[a]:
                # the first c jobs of the order; the others in service stop
                nc = 0
                for r in range(n):
                    k = o_buf[r]
                    for i in range(q_len[k]):
                        if nc == c:
                            break
                        slot = q[k, (q_head[k] + i) % qcap]
                        c_buf[nc] = slot
                        nc += 1
                        mark[slot] = stamp
                    if nc == c:
                        break
                ns = e_nserv[a]
                for i in range(ns):
                    s_buf[i] = e_serving[a, i]
                for i in range(ns):
                    slot = s_buf[i]
                    if mark[slot] != stamp:
                        _stop(
                            j_since,
                            j_ver,
                            j_left,
                            j_cls,
                            work_left,
                            e_backlog,
                            e_done,
                            e_serving,
                            e_nserv,
                            a,
                            slot,
                            now,
                        )
                iv[I_STAMP] += 1
                stamp = iv[I_STAMP]
                for i in range(e_nserv[a]):
                    mark[e_serving[a, i]] = stamp
                for i in range(nc):
                    slot = c_buf[i]
                    if mark[slot] != stamp:
                        _start(
                            ht,
                            hk,
                            hs,
                            ha,
                            hj,
                            iv,
                            j_since,
                            j_ver,
                            j_left,
                            e_serving,
                            e_nserv,
                            a,
                            slot,
                            now,
                        )
                continue
            free_servers = c - e_nserv[a]
            if free_servers > 0:
                for i in range(e_nserv[a]):
                    mark[e_serving[a, i]] = stamp
                for r in range(n):
                    k = o_buf[r]
                    for i in range(q_len[k]):
                        if free_servers == 0:
                            break
                        slot = q[k, (q_head[k] + i) % qcap]
                        if mark[slot] != stamp:
                            _start(
                                ht,
                                hk,
                                hs,
                                ha,
                                hj,
                                iv,
                                j_since,
                                j_ver,
                                j_left,
                                e_serving,
                                e_nserv,
                                a,
                                slot,
                                now,
                            )
                            free_servers -= 1
            e_busy[a] = e_nserv[a] == c  # every server holds a job it keeps
            continue
        chosen = -1
        if mode <= FIXED:  # SINGLE or FIXED: the order as it stands
            if mode == FIXED:
                iv[I_DECISIONS] += 1
            for r in range(e_norder[a]):
                k = e_order[a, r]
                if q_len[k] > 0:
                    chosen = q[k, q_head[k]]
                    break
        elif mode == FCFS:
            iv[I_DECISIONS] += 1
            for r in range(e_norder[a]):
                k = e_order[a, r]
                if q_len[k] > 0:
                    head = q[k, q_head[k]]
                    if chosen < 0 or j_arr[head] < j_arr[chosen]:
                        chosen = head
        else:  # LINEAR or PRESSURE: the class of least key with a waiting job (ties: lower index)
            iv[I_DECISIONS] += 1
            best = 0.0
            best_k = -1
            for r in range(e_norder[a]):
                k = e_order[a, r]
                if q_len[k] == 0:
                    continue
                if mode == PRESSURE:
                    key = pressure_key(k, jobs, p_neg, p_ptr, p_succ, p_prob)
                    if p_positive and not key < 0.0:
                        continue
                else:  # LINEAR: -(a_k z_k + b_k)
                    key = -(lin_a[k] * jobs[k] + lin_b[k])
                if best_k < 0 or key < best or (key == best and k < best_k):
                    best = key
                    best_k = k
            if best_k >= 0:
                chosen = q[best_k, q_head[best_k]]
        cur = e_current[a]
        if chosen == cur:
            continue
        if cur >= 0:  # preempt
            if not e_preempts[a]:
                continue  # non-preemptive: the job in service finishes
            used = now - e_started[a]
            j_left[cur] -= used
            work_left[j_cls[cur]] -= used
            e_backlog[a] -= used
            e_done[a] += used
        e_current[a] = chosen
        if chosen < 0:
            e_version[a] = 0  # no completion is due
            continue
        e_started[a] = now
        if not e_preempts[a]:
            e_busy[a] = True  # until the job completes
        nseq = iv[I_SEQ] + 1
        iv[I_SEQ] = nseq
        e_version[a] = nseq
        _push(ht, hk, hs, ha, hj, iv, now + j_left[chosen], DONE, nseq, a, chosen)
    fv[F_NOW] = now
    return STOP_END


# ---------------------------------------------------------------- external mode
# (here, beside run_stations: numba's cache of a function is renewed when its own file changes)


@njit(cache=True)
def resume(st):  # type: ignore[no-untyped-def]
    """Run the kernel on ``st`` (a :class:`~policyopt.sim.kernel_state.KernelState`) until
    Python must act: :func:`run_stations` with ``st``'s fields as its arguments (returns its
    ``STOP_*`` code).

    When it stops for a decision, ``st.out[5]`` is the time and ``st.out[6]`` the deciding
    engine (one read for Python), and if ``st.obs`` is not empty, :func:`observe` fills
    ``st.obs`` and ``st.out[:5]`` (from ``st.scale`` and ``st.weights``)."""
    code = run_stations(
        st.iv,
        st.fv,
        st.ht,
        st.hk,
        st.hs,
        st.ha,
        st.hj,
        st.dq,
        st.e_current,
        st.e_started,
        st.e_version,
        st.e_backlog,
        st.e_done,
        st.e_arrived,
        st.e_batches,
        st.e_pending,
        st.e_busy,
        st.e_preempts,
        st.e_single,
        st.e_multi,
        st.e_servers,
        st.e_serving,
        st.e_nserv,
        st.e_mode,
        st.e_order,
        st.e_norder,
        st.e_hasrank,
        st.e_rank,
        st.j_cls,
        st.j_arr,
        st.j_fid,
        st.j_ft0,
        st.j_fw,
        st.j_left,
        st.j_id,
        st.j_since,
        st.j_ver,
        st.mark,
        st.j_fork,
        st.free,
        st.k_left,
        st.k_join,
        st.k_parent,
        st.k_fid,
        st.k_free,
        st.q,
        st.q_head,
        st.q_len,
        st.work_left,
        st.last,
        st.area,
        st.jobs,
        st.done_class,
        st.next_of,
        st.r_ptr,
        st.r_tgt,
        st.r_prob,
        st.f_ptr,
        st.f_tgt,
        st.f_join,
        st.entries,
        st.engine_of,
        st.a_gap,
        st.a_buf,
        st.a_pos,
        st.w_buf,
        st.w_pos,
        st.u_buf,
        st.l_code,
        st.l_val,
        st.f_w,
        st.f_t0,
        st.f_left,
        st.p_neg,
        st.p_ptr,
        st.p_succ,
        st.p_prob,
        st.p_positive,
        st.lin_a,
        st.lin_b,
        st.o_buf,
        st.o_key,
        st.c_buf,
        st.s_buf,
        st.e_llm,
        st.e_li,
        st.e_lf,
        st.e_table,
        st.e_fin,
        st.e_cls,
        st.e_ncls,
        st.j_tok,
        st.d,
        st.d_head,
        st.d_len,
        st.wp_buf,
        st.wd_buf,
        st.pl,
        st.pn,
        st.r_buf,
        st.iv_log,
        st.sh,
        st.qb,
        st.e_pc,
        st.sample_t,
        st.sample_jobs,
        st.sample_backlog,
        st.sample_mem,
        st.every,
        st.progress_every,
    )
    if code == STOP_DECIDE:
        st.out[5] = st.fv[F_NOW]
        st.out[6] = st.iv[I_PENDING]
        if st.obs.shape[0] > 0:
            observe(st, st.scale, st.weights, st.obs, st.out)
    return code


@njit(cache=True)
def class_state(st):  # type: ignore[no-untyped-def]
    """``class_state_flat()`` of the kernel's state ``st`` now: per class the jobs waiting
    (LLM: prefill not finished; station: not in service), in service, and the work left
    (tokens, or seconds), ``3K`` floats, with the Python loop's arithmetic."""
    now = st.fv[F_NOW]
    q_len, work_left, jobs, j_cls = st.q_len, st.work_left, st.jobs, st.j_cls
    e_llm, e_multi, e_current, e_started = st.e_llm, st.e_multi, st.e_current, st.e_started
    K = q_len.shape[0]
    flat = np.empty(3 * K)
    for k in range(K):
        flat[k] = 0.0 + q_len[k]
        flat[2 * K + k] = work_left[k]
    for a in range(e_llm.shape[0]):
        if e_llm[a]:
            continue
        if not e_multi[a]:
            cur = e_current[a]
            if cur >= 0:
                k = j_cls[cur]
                flat[k] -= 1.0  # the job in service heads its queue
                flat[2 * K + k] -= now - e_started[a]
            continue
        for i in range(st.e_nserv[a]):  # several servers
            slot = st.e_serving[a, i]
            k = j_cls[slot]
            flat[k] -= 1.0
            flat[2 * K + k] -= now - st.j_since[slot]
    for k in range(K):
        flat[K + k] = jobs[k] - flat[k]
    return flat


@njit(cache=True)
def observe(st, scale, weights, obs, out):  # type: ignore[no-untyped-def]
    """The state a decision sees, as the Python loop's queries give it, bit for bit.

    ``obs`` (``3K + J + C`` entries): ``x / (x + c)`` (0 for ``x <= 0``; ``c``: ``scale``) of
    ``class_state_flat()`` (waiting, in service, remaining work per class), a one-hot of the
    deciding engine, and ``memory_free()`` (the ``C`` engines with a limited KV cache);
    ``out``: ``cost_so_far(weights)`` (job-seconds and weighted job-seconds since the
    warm-up), the jobs in the network, ``weights . jobs``, and the classes with work at the
    deciding engine (``classes_with_work``) as a bit mask (bit ``k``: class ``k``).
    """
    engine = st.iv[I_PENDING]
    now, horizon, warmup = st.fv[F_NOW], st.fv[F_HORIZON], st.fv[F_WARMUP]
    q_len, d_len, jobs, area, last, e_llm = st.q_len, st.d_len, st.jobs, st.area, st.last, st.e_llm
    K = q_len.shape[0]
    flat = class_state(st)
    for k in range(3 * K):
        x = flat[k]
        obs[k] = x / (x + scale[k]) if x > 0.0 else 0.0
    J = e_llm.shape[0]
    i = 3 * K + J
    for a in range(J):
        obs[3 * K + a] = 1.0 if a == engine else 0.0
        if st.e_li[a, L_MEM] != 0:  # the share of a KV cache's blocks free
            obs[i] = st.e_li[a, L_FREE] / st.e_li[a, L_TOTAL]
            i += 1
    t = now if now < horizon else horizon
    total = cost = n_jobs = rate = 0.0
    for k in range(K):
        lo = last[k]
        if lo < warmup:
            lo = warmup
        s = area[k]
        n = jobs[k]
        if t > lo:
            s += n * (t - lo)
        total += s
        cost += weights[k] * s
        n_jobs += n
        rate += weights[k] * n
    out[0] = total
    out[1] = cost
    out[2] = n_jobs
    out[3] = rate
    legal = 0
    llm = e_llm[engine]
    for c in range(st.e_ncls[engine]):
        k = st.e_cls[engine, c]
        if q_len[k] > 0 or (llm and d_len[k] > 0):
            legal |= 1 << k
    out[4] = legal
