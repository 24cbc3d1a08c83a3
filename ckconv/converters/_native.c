/* ckconv.converters._native: the byte-moving loops of transposes and float casts, compiled.

   Optional: ckconv runs the same conversions with numpy when this module is not built
   (ckconv/converters/kernels.py holds both paths and picks one). Every function takes
   buffer-protocol objects (bytes, bytearray, memoryview, mmap, numpy arrays), works on
   raw bits, and releases the GIL while it loops, so that ckconv's two block threads
   (ckconv/io/blocks.py) compute on both cores.

   The casts give the bytes PyTorch's CPU kernels give for a contiguous tensor (see
   kernels.py for the NaN rules, and tests/converters/test_casts_live.py, which compares
   both paths with torch). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CK_X86 1
#include <immintrin.h>
#endif

/* ------------------------------------------------------------------ transposes */

/* Output rows are source columns. A tile of 32 x 32 elements keeps the source lines it
   reads and the output lines it writes in the L1 cache (4 KiB a side for 4-byte elements);
   16 and 64 measured within noise of 32 on BERT's kernels, 8 a third slower. */
#define TILE 32

#define DEFINE_TRANSPOSE(NAME, T)                                                        \
    static void NAME(const T *src, T *dst, Py_ssize_t rows, Py_ssize_t cols,             \
                     Py_ssize_t r0, Py_ssize_t nrows)                                    \
    {                                                                                    \
        for (Py_ssize_t i0 = 0; i0 < nrows; i0 += TILE) {                                \
            Py_ssize_t i1 = i0 + TILE < nrows ? i0 + TILE : nrows;                       \
            for (Py_ssize_t j0 = 0; j0 < rows; j0 += TILE) {                             \
                Py_ssize_t j1 = j0 + TILE < rows ? j0 + TILE : rows;                     \
                for (Py_ssize_t i = i0; i < i1; i++) {                                   \
                    T *out = dst + i * rows;                                             \
                    const T *in = src + (r0 + i);                                        \
                    for (Py_ssize_t j = j0; j < j1; j++)                                 \
                        out[j] = in[j * cols];                                           \
                }                                                                        \
            }                                                                            \
        }                                                                                \
    }

DEFINE_TRANSPOSE(transpose_u8, uint8_t)
DEFINE_TRANSPOSE(transpose_u16, uint16_t)
DEFINE_TRANSPOSE(transpose_u64, uint64_t)

#ifdef CK_X86
/* 4-byte elements, 4 x 4 at a time in SSE registers (every x86-64 CPU has SSE2). */
static void transpose_u32(const uint32_t *src, uint32_t *dst, Py_ssize_t rows,
                          Py_ssize_t cols, Py_ssize_t r0, Py_ssize_t nrows)
{
    for (Py_ssize_t i0 = 0; i0 < nrows; i0 += TILE) {
        Py_ssize_t i1 = i0 + TILE < nrows ? i0 + TILE : nrows;
        for (Py_ssize_t j0 = 0; j0 < rows; j0 += TILE) {
            Py_ssize_t j1 = j0 + TILE < rows ? j0 + TILE : rows;
            Py_ssize_t i = i0;
            for (; i + 4 <= i1; i += 4) {
                Py_ssize_t j = j0;
                for (; j + 4 <= j1; j += 4) {
                    const float *in = (const float *)src + j * cols + r0 + i;
                    __m128 a = _mm_loadu_ps(in), b = _mm_loadu_ps(in + cols);
                    __m128 c = _mm_loadu_ps(in + 2 * cols), d = _mm_loadu_ps(in + 3 * cols);
                    _MM_TRANSPOSE4_PS(a, b, c, d);
                    float *out = (float *)dst + i * rows + j;
                    _mm_storeu_ps(out, a);
                    _mm_storeu_ps(out + rows, b);
                    _mm_storeu_ps(out + 2 * rows, c);
                    _mm_storeu_ps(out + 3 * rows, d);
                }
                for (; j < j1; j++)
                    for (Py_ssize_t k = 0; k < 4; k++)
                        dst[(i + k) * rows + j] = src[j * cols + r0 + i + k];
            }
            for (; i < i1; i++)
                for (Py_ssize_t j = j0; j < j1; j++)
                    dst[i * rows + j] = src[j * cols + r0 + i];
        }
    }
}
#else
DEFINE_TRANSPOSE(transpose_u32, uint32_t)
#endif

/* Any other element size: one memcpy per element, still tiled. */
static void transpose_bytes(const char *src, char *dst, Py_ssize_t rows, Py_ssize_t cols,
                            Py_ssize_t r0, Py_ssize_t nrows, Py_ssize_t size)
{
    for (Py_ssize_t i0 = 0; i0 < nrows; i0 += TILE) {
        Py_ssize_t i1 = i0 + TILE < nrows ? i0 + TILE : nrows;
        for (Py_ssize_t j0 = 0; j0 < rows; j0 += TILE) {
            Py_ssize_t j1 = j0 + TILE < rows ? j0 + TILE : rows;
            for (Py_ssize_t i = i0; i < i1; i++)
                for (Py_ssize_t j = j0; j < j1; j++)
                    memcpy(dst + (i * rows + j) * size, src + (j * cols + r0 + i) * size, size);
        }
    }
}

/* transpose(src, dst, rows, cols, itemsize, r0): src holds a rows x cols matrix in C
   order; dst receives rows r0, r0 + 1, ... of its transpose (cols x rows), as many as it
   holds whole. */
static PyObject *py_transpose(PyObject *self, PyObject *args)
{
    Py_buffer src, dst;
    Py_ssize_t rows, cols, size, r0;
    if (!PyArg_ParseTuple(args, "y*w*nnnn:transpose", &src, &dst, &rows, &cols, &size, &r0))
        return NULL;
    PyObject *result = NULL;
    if (rows < 0 || cols < 0 || size <= 0 || r0 < 0) {
        PyErr_SetString(PyExc_ValueError, "transpose: negative shape, offset or element size");
        goto done;
    }
    Py_ssize_t row_bytes = rows * size;
    Py_ssize_t nrows = row_bytes ? dst.len / row_bytes : 0;
    if (row_bytes && dst.len % row_bytes) {
        PyErr_SetString(PyExc_ValueError, "transpose: the output is not whole rows");
        goto done;
    }
    if (src.len < rows * cols * size || r0 + nrows > cols) {
        PyErr_SetString(PyExc_ValueError, "transpose: the output reaches past the source");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    switch (size) {
    case 1: transpose_u8(src.buf, dst.buf, rows, cols, r0, nrows); break;
    case 2: transpose_u16(src.buf, dst.buf, rows, cols, r0, nrows); break;
    case 4: transpose_u32(src.buf, dst.buf, rows, cols, r0, nrows); break;
    case 8: transpose_u64(src.buf, dst.buf, rows, cols, r0, nrows); break;
    default: transpose_bytes(src.buf, dst.buf, rows, cols, r0, nrows, size);
    }
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

/* ------------------------------------------------------------------------ casts */

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* float32 -> bfloat16: add 0x7FFF plus the lowest kept bit, keep the high half (round to
   nearest even; carries into the exponent exactly when the value rounds up a binade or
   to infinity). torch's vectorised loop writes 0xFFFF for every NaN. */
static void f32_to_bf16(const uint32_t *src, uint16_t *dst, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        uint32_t x = src[k];
        uint32_t r = (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
        dst[k] = (x & 0x7FFFFFFFu) > 0x7F800000u ? 0xFFFFu : (uint16_t)r;
    }
}

static void bf16_to_f32(const uint16_t *src, uint32_t *dst, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++)
        dst[k] = (uint32_t)src[k] << 16;
}

/* float32 -> float16, round to nearest even. Normal results: rebias the exponent and
   round the 13 dropped bits; past the largest half, infinity. Below the smallest normal
   half, adding 0.5 in float32 lines the half's last bit up with float32's, so the FPU
   rounds. NaN: sign, quiet bit, the payload's top ten bits (F16C's rule, and torch's). */
static inline uint16_t f32_to_f16_one(uint32_t x)
{
    uint32_t mag = x & 0x7FFFFFFFu, sign = (x >> 16) & 0x8000u, h;
    if (mag > 0x7F800000u) {
        h = 0x7E00u | ((mag >> 13) & 0x3FFu);
    } else if (mag < 0x38800000u) {
        h = f32_bits(bits_f32(mag) + 0.5f) - 0x3F000000u;
    } else {
        h = (mag + ((mag >> 13) & 1u) + 0x0FFFu - 0x38000000u) >> 13;
        if (h > 0x7C00u)
            h = 0x7C00u;
    }
    return (uint16_t)(sign | h);
}

/* float16 -> float32, exact; a NaN keeps sign and payload and is made quiet. */
static inline uint32_t f16_to_f32_one(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1Fu)
        return sign | 0x7F800000u | (m << 13) | (m ? 0x00400000u : 0u);
    if (e == 0)  /* zero or subnormal: m * 2^-24 is exact in float32 */
        return sign | f32_bits((float)m * 5.9604644775390625e-8f);
    return sign | ((e + 112u) << 23) | (m << 13);
}

#ifdef CK_X86
/* The F16C instructions give the same bits (checked against the scalar code and torch by
   the tests) several times faster. */
__attribute__((target("avx,f16c")))
static void f32_to_f16_f16c(const uint32_t *src, uint16_t *dst, Py_ssize_t n)
{
    Py_ssize_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 v = _mm256_loadu_ps((const float *)src + k);
        _mm_storeu_si128((__m128i *)(dst + k), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; k < n; k++)
        dst[k] = f32_to_f16_one(src[k]);
}

__attribute__((target("avx,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, uint32_t *dst, Py_ssize_t n)
{
    Py_ssize_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + k)));
        /* F16C keeps a signalling NaN signalling; torch's result is quiet. */
        __m256i bits = _mm256_castps_si256(v);
        __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        __m256 quiet = _mm256_and_ps(nan, _mm256_castsi256_ps(_mm256_set1_epi32(0x00400000)));
        _mm256_storeu_ps((float *)dst + k, _mm256_or_ps(_mm256_castsi256_ps(bits), quiet));
    }
    for (; k < n; k++)
        dst[k] = f16_to_f32_one(src[k]);
}

/* Whether the CPU has the F16C (and AVX) instructions: the module's cast table takes
   the F16C loops then (PyInit__native). */
static int has_f16c(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
}
#endif

static void f32_to_f16(const uint32_t *src, uint16_t *dst, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++)
        dst[k] = f32_to_f16_one(src[k]);
}

static void f16_to_f32(const uint16_t *src, uint32_t *dst, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++)
        dst[k] = f16_to_f32_one(src[k]);
}

/* Between the halves: through float32 (exact), rounding once. torch's float16 ->
   bfloat16 loop writes 0x7FC0 for every NaN. */
static void bf16_to_f16(const uint16_t *src, uint16_t *dst, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++)
        dst[k] = f32_to_f16_one((uint32_t)src[k] << 16);
}

static void f16_to_bf16(const uint16_t *src, uint16_t *dst, Py_ssize_t n)
{
    for (Py_ssize_t k = 0; k < n; k++) {
        uint32_t x = f16_to_f32_one(src[k]);
        dst[k] = (x & 0x7FFFFFFFu) > 0x7F800000u ? 0x7FC0u
                                                 : (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
    }
}

typedef void (*cast_fn)(const void *, void *, Py_ssize_t);

static struct {
    const char *name;
    int in_size, out_size;
    cast_fn fn;
} CASTS[] = {
    {"float32>bfloat16", 4, 2, (cast_fn)f32_to_bf16},
    {"bfloat16>float32", 2, 4, (cast_fn)bf16_to_f32},
    {"float32>float16", 4, 2, (cast_fn)f32_to_f16},
    {"float16>float32", 2, 4, (cast_fn)f16_to_f32},
    {"bfloat16>float16", 2, 2, (cast_fn)bf16_to_f16},
    {"float16>bfloat16", 2, 2, (cast_fn)f16_to_bf16},
};

/* cast(name, src, dst): name is "SOURCE>TARGET" (dtype names); src and dst hold the same
   number of elements. */
static PyObject *py_cast(PyObject *self, PyObject *args)
{
    const char *name;
    Py_buffer src, dst;
    if (!PyArg_ParseTuple(args, "sy*w*:cast", &name, &src, &dst))
        return NULL;
    PyObject *result = NULL;
    size_t which = 0, count = sizeof(CASTS) / sizeof(CASTS[0]);
    while (which < count && strcmp(CASTS[which].name, name) != 0)
        which++;
    if (which == count) {
        PyErr_Format(PyExc_ValueError, "cast: no kernel for %s", name);
        goto done;
    }
    Py_ssize_t n = src.len / CASTS[which].in_size;
    if (src.len % CASTS[which].in_size || dst.len != n * CASTS[which].out_size) {
        PyErr_SetString(PyExc_ValueError, "cast: source and output lengths do not agree");
        goto done;
    }
    cast_fn fn = CASTS[which].fn;
    Py_BEGIN_ALLOW_THREADS
    fn(src.buf, dst.buf, n);
    Py_END_ALLOW_THREADS
    result = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

static PyObject *py_casts(PyObject *self, PyObject *unused)
{
    size_t count = sizeof(CASTS) / sizeof(CASTS[0]);
    PyObject *out = PyTuple_New((Py_ssize_t)count);
    if (out == NULL)
        return NULL;
    for (size_t k = 0; k < count; k++) {
        PyObject *s = PyUnicode_FromString(CASTS[k].name);
        if (s == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, (Py_ssize_t)k, s);
    }
    return out;
}

static PyMethodDef METHODS[] = {
    {"transpose", py_transpose, METH_VARARGS,
     "transpose(src, dst, rows, cols, itemsize, r0): rows r0... of the transpose of a "
     "rows x cols C-order matrix, into dst (whole rows); releases the GIL."},
    {"cast", py_cast, METH_VARARGS,
     "cast('SOURCE>TARGET', src, dst): convert raw float bits as torch does; releases "
     "the GIL."},
    {"casts", py_casts, METH_NOARGS, "The names cast() accepts."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {
    PyModuleDef_HEAD_INIT, "ckconv.converters._native",
    "Compiled transposes and float casts for ckconv (optional; numpy does the same).",
    -1, METHODS,
};

PyMODINIT_FUNC PyInit__native(void)
{
#ifdef CK_X86
    if (has_f16c()) {
        for (size_t k = 0; k < sizeof(CASTS) / sizeof(CASTS[0]); k++) {
            if (CASTS[k].fn == (cast_fn)f32_to_f16)
                CASTS[k].fn = (cast_fn)f32_to_f16_f16c;
            else if (CASTS[k].fn == (cast_fn)f16_to_f32)
                CASTS[k].fn = (cast_fn)f16_to_f32_f16c;
        }
    }
#endif
    return PyModule_Create(&MODULE);
}
