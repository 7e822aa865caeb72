#ifndef OFFSITE_CZLIB_SHIM_H
#define OFFSITE_CZLIB_SHIM_H
#include <zlib.h>

/// Wraps the deflateInit2 macro (it passes ZLIB_VERSION and sizeof(z_stream) for us).
static inline int offsite_deflate_init2(z_streamp strm, int level, int method, int windowBits, int memLevel, int strategy) {
    return deflateInit2(strm, level, method, windowBits, memLevel, strategy);
}

/// Wraps the inflateInit2 macro.
static inline int offsite_inflate_init2(z_streamp strm, int windowBits) {
    return inflateInit2(strm, windowBits);
}
#endif
