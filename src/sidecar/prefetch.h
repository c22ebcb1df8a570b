/*
 * prefetch.h - the automatic prefetch (ASYA_RABBITMQ_PREFETCH unset) as a
 * pure function of the handler's moving average time.
 *
 * Fast handlers (under 20 ms) get the deep window (prefetch_max), so slots
 * stay busy while earlier results wait for the broker's confirms.  Slow ones
 * (over 50 ms) get little more than their slots, so messages are neither
 * hoarded away from other replicas nor left waiting past the broker's
 * consumer timeout.  In between, the current window stays.
 */
#ifndef ASYA_PREFETCH_H
#define ASYA_PREFETCH_H

#define PREFETCH_FAST_HANDLER_S 0.020
#define PREFETCH_SLOW_HANDLER_S 0.050

/* The narrow window for concurrency slots: what the sidecar starts with. */
unsigned prefetch_narrow(long concurrency);

/* The prefetch to use given the average handler time ewma_s (0: unknown). */
unsigned prefetch_choose(double ewma_s, unsigned current, long concurrency, long prefetch_max);

/* n capped so that n messages of avg_len bytes on average fit in budget
 * bytes (ASYA_MAX_INFLIGHT_BYTES); at least 1.  avg_len <= 0: n. */
unsigned prefetch_fit_bytes(unsigned n, long budget, double avg_len);

/* Moving average update with weight PREFETCH_EWMA_WEIGHT (first sample as is). */
double prefetch_ewma(double ewma_s, double sample_s);

#endif /* ASYA_PREFETCH_H */
