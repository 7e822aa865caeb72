#ifndef OFFSITE_CSQLITE_SHIM_H
#define OFFSITE_CSQLITE_SHIM_H
#include <sqlite3.h>

/// Wraps the SQLITE_TRANSIENT destructor macro, which Swift cannot import: SQLite copies the value.
static inline sqlite3_destructor_type offsite_sqlite_transient(void) { return SQLITE_TRANSIENT; }

/// Wraps variadic sqlite3_db_config for the (int, int*) options such as SQLITE_DBCONFIG_DEFENSIVE.
static inline int offsite_sqlite_db_config_int(sqlite3 *db, int op, int value, int *out) {
    return sqlite3_db_config(db, op, value, out);
}

/// Wraps variadic sqlite3_file_control for the int-argument opcodes such as SQLITE_FCNTL_PERSIST_WAL.
static inline int offsite_sqlite_file_control_int(sqlite3 *db, const char *schema, int op, int *value) {
    return sqlite3_file_control(db, schema, op, value);
}

/// Maps the first region (32 KiB) of the wal-index (`-shm`) of the "main" database of `db`
/// through SQLite's own VFS (`SQLITE_FCNTL_FILE_POINTER`, then `xShmMap`), so that no descriptor of
/// the file is opened and closed in this process (which would drop every POSIX lock it holds on
/// it). The connection must have the database in WAL mode and have read from it. *region stays
/// valid while the connection is open.
static inline int offsite_sqlite_shm_map(sqlite3 *db, volatile void **region) {
    sqlite3_file *file = 0;
    int rc = sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &file);
    if (rc != SQLITE_OK) return rc;
    if (!file || !file->pMethods || file->pMethods->iVersion < 2 || !file->pMethods->xShmMap) return SQLITE_ERROR;
    return file->pMethods->xShmMap(file, 0, 32768, 0, region);
}

/// What the wal-index header says (walformat.html, "The WAL-Index Header"), read consistently.
typedef struct {
    unsigned int change;      /* iChange: counts commits */
    unsigned int pageSize;    /* szPage, 65536 when stored as 1 */
    unsigned int maxFrame;    /* mxFrame: the last committed, published frame */
    unsigned int pageCount;   /* nPage: database size after the last commit */
    unsigned int frameChecksum[2];  /* cumulative checksum of frame maxFrame */
    unsigned char salt[8];    /* the WAL header's salts, as stored there */
    unsigned int backfilled;  /* nBackfill: frames copied into the database */
} offsite_wal_index_header;

/// Reads the wal-index header from a mapped region the way SQLite's readers do (walIndexTryHdr):
/// the two copies must match, be initialised and carry a valid checksum; `nBackfill` is read
/// between two reads of the header that agree. Returns 0 on success, 1 when no consistent read
/// was made (a writer was busy: try again), 2 when the index is not initialised.
static inline int offsite_wal_index_read(volatile void *region, offsite_wal_index_header *out) {
    volatile unsigned char *bytes = (volatile unsigned char *)region;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned int first[12], second[12], again[12];
        for (int i = 0; i < 12; i++) first[i] = ((volatile unsigned int *)bytes)[i];
        __sync_synchronize();
        for (int i = 0; i < 12; i++) second[i] = ((volatile unsigned int *)(bytes + 48))[i];
        if (__builtin_memcmp(first, second, 48) != 0) continue;
        unsigned char isInit = ((unsigned char *)first)[12];
        if (!isInit) return 2;
        /* walChecksumBytes over the first 40 bytes, native byte order. */
        unsigned int s1 = 0, s2 = 0;
        for (int i = 0; i < 10; i += 2) { s1 += first[i] + s2; s2 += first[i + 1] + s1; }
        if (s1 != first[10] || s2 != first[11]) continue;
        __sync_synchronize();
        unsigned int backfilled = ((volatile unsigned int *)(bytes + 96))[0];
        __sync_synchronize();
        for (int i = 0; i < 12; i++) again[i] = ((volatile unsigned int *)bytes)[i];
        if (__builtin_memcmp(first, again, 48) != 0) continue;
        if (backfilled > first[4]) continue;
        unsigned short size = ((unsigned short *)first)[7];
        out->change = first[2];
        out->pageSize = size == 1 ? 65536 : size;
        out->maxFrame = first[4];
        out->pageCount = first[5];
        out->frameChecksum[0] = first[6];
        out->frameChecksum[1] = first[7];
        __builtin_memcpy(out->salt, &first[8], 8);
        out->backfilled = backfilled;
        return 0;
    }
    return 1;
}
#endif
