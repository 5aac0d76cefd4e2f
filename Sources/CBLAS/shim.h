// OpenBLAS: CBLAS plus the few Fortran LAPACK entry points Basin calls.
// Debian's libopenblas-dev ships cblas.h (with openblas_set_num_threads) but no
// lapack.h beside it, so the LAPACK prototypes are declared here.
#ifndef BASIN_CBLAS_SHIM_H
#define BASIN_CBLAS_SHIM_H
#include <cblas.h>

// Symmetric positive definite solve (Cholesky): A X = B, column-major.
void sposv_(const char *uplo, const int *n, const int *nrhs, float *a, const int *lda,
            float *b, const int *ldb, int *info);
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda,
            double *b, const int *ldb, int *info);
// General solve (LU with partial pivoting): A X = B, column-major.
void sgesv_(const int *n, const int *nrhs, float *a, const int *lda, int *ipiv,
            float *b, const int *ldb, int *info);
void dgesv_(const int *n, const int *nrhs, double *a, const int *lda, int *ipiv,
            double *b, const int *ldb, int *info);
// Symmetric eigen-decomposition.
void ssyev_(const char *jobz, const char *uplo, const int *n, float *a, const int *lda,
            float *w, float *work, const int *lwork, int *info);
#endif
