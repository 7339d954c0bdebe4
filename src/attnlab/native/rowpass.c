/* The row and column sums the head statistics need from one block of attention, in one
 * sweep over the block instead of three torch passes (a row dot product, a matrix-vector
 * product and a column sum).
 *
 * S, P: [n_bh, q, kk] fp32, contiguous: masked logits (finite: masked entries hold
 * finfo.min, where P is 0) and their softmax. For row i of block-head bh:
 *   dot[i]    = sum_j P[i, j] S[i, j]              (entropy = lse - dot)
 *   kmean[i]  = sum_j P[i, j] j                    (j counted from the block's first key)
 *   col[t, bh, j] += P[i, j]                       (per-thread partial column sums, fp64:
 *                                                   a sink's sum over 8k rows keeps 1e-4)
 * Rows are split into one contiguous range per thread; col has n_threads slices that the
 * caller adds up.
 */
#include <omp.h>
#include <string.h>

static void one_row(const float *restrict s, const float *restrict p, long kk, double *restrict col,
                    float *dot, float *kmean) {
    float d = 0.0f, km = 0.0f;
    for (long j = 0; j < kk; j++) {
        float v = p[j];
        d += v * s[j];
        km += v * (float)j;
        col[j] += v;
    }
    *dot = d;
    *kmean = km;
}

void rowpass(const float *S, const float *P, long n_bh, long q, long kk, float *dot, float *kmean,
             double *col, int n_threads) {
    long rows = n_bh * q;
    memset(col, 0, sizeof(double) * (size_t)n_threads * n_bh * kk);
#pragma omp parallel num_threads(n_threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        long r0 = rows * t / nt, r1 = rows * (t + 1) / nt;
        double *mine = col + (size_t)t * n_bh * kk;
        for (long r = r0; r < r1; r++)
            one_row(S + (size_t)r * kk, P + (size_t)r * kk, kk, mine + (size_t)(r / q) * kk, dot + r, kmean + r);
    }
}
