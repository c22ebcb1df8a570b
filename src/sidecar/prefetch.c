#include "prefetch.h"

#define PREFETCH_EWMA_WEIGHT 0.1

unsigned prefetch_narrow(long concurrency)
{
    return (unsigned)(concurrency * 2 + 2);
}

unsigned prefetch_choose(double ewma_s, unsigned current, long concurrency, long prefetch_max)
{
    if (ewma_s <= 0)
        return current;
    if (ewma_s < PREFETCH_FAST_HANDLER_S)
        return (unsigned)prefetch_max;
    if (ewma_s > PREFETCH_SLOW_HANDLER_S)
        return prefetch_narrow(concurrency);
    return current;
}

double prefetch_ewma(double ewma_s, double sample_s)
{
    return ewma_s > 0 ? ewma_s + PREFETCH_EWMA_WEIGHT * (sample_s - ewma_s) : sample_s;
}

unsigned prefetch_fit_bytes(unsigned n, long budget, double avg_len)
{
    if (!(avg_len > 0) || budget <= 0)
        return n;
    double fit = (double)budget / avg_len;
    if (fit < 1.0)
        return 1;
    return fit < (double)n ? (unsigned)fit : n;
}
