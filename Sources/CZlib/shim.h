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

/// Wraps crc32_combine, whose length type (z_off_t) is a macro Swift cannot see.
static inline unsigned long offsite_crc32_combine(unsigned long crc1, unsigned long crc2, long long length2) {
    return crc32_combine(crc1, crc2, (z_off_t)length2);
}
#endif
