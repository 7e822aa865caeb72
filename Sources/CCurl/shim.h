#ifndef OFFSITE_CCURL_SHIM_H
#define OFFSITE_CCURL_SHIM_H
#include <curl/curl.h>

/// Wraps curl_version_info(CURLVERSION_NOW), whose argument is a macro-defined enum value.
static inline const char *offsite_curl_version(void) {
    return curl_version_info(CURLVERSION_NOW)->version;
}

/// Wraps curl_global_init(CURL_GLOBAL_DEFAULT); CURL_GLOBAL_DEFAULT is a macro.
static inline CURLcode offsite_curl_global_init(void) {
    return curl_global_init(CURL_GLOBAL_DEFAULT);
}

/// Wraps the variadic curl_easy_setopt for options that take a `long` (timeouts, flags).
static inline CURLcode offsite_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

/// Wraps the variadic curl_easy_setopt for options that take a `curl_off_t` (CURLOPT_INFILESIZE_LARGE).
static inline CURLcode offsite_curl_setopt_offset(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

/// Wraps the variadic curl_easy_setopt for options that take a C string (URL, method); curl copies it.
static inline CURLcode offsite_curl_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

/// Wraps the variadic curl_easy_setopt for options that take an opaque pointer (CURLOPT_WRITEDATA,
/// CURLOPT_READDATA, CURLOPT_HEADERDATA, CURLOPT_XFERINFODATA).
static inline CURLcode offsite_curl_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

/// Wraps the variadic curl_easy_setopt for options that take a header list (CURLOPT_HTTPHEADER).
static inline CURLcode offsite_curl_setopt_list(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}

/// Wraps the variadic curl_easy_setopt for the data callbacks CURLOPT_WRITEFUNCTION,
/// CURLOPT_READFUNCTION and CURLOPT_HEADERFUNCTION, which share one C signature.
static inline CURLcode offsite_curl_setopt_data_function(CURL *handle, CURLoption option,
                                                         size_t (*function)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(handle, option, function);
}

/// Wraps the variadic curl_easy_setopt for CURLOPT_SEEKFUNCTION (rewinding an upload body).
static inline CURLcode offsite_curl_setopt_seek_function(CURL *handle, curl_seek_callback function) {
    return curl_easy_setopt(handle, CURLOPT_SEEKFUNCTION, function);
}

/// Wraps the variadic curl_easy_setopt for CURLOPT_XFERINFOFUNCTION (progress, used to cancel).
static inline CURLcode offsite_curl_setopt_progress_function(CURL *handle, curl_xferinfo_callback function) {
    return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, function);
}

/// Wraps the variadic curl_easy_getinfo for information returned as a `long` (CURLINFO_RESPONSE_CODE).
static inline CURLcode offsite_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

/// The value a read callback returns to abort the transfer (CURL_READFUNC_ABORT is a macro).
static inline size_t offsite_curl_read_abort(void) {
    return CURL_READFUNC_ABORT;
}

/// The CURLOPT_HTTPAUTH bitmask for Basic and/or Digest (CURLAUTH_BASIC and CURLAUTH_DIGEST are macros).
static inline unsigned long offsite_curl_auth_mask(int basic, int digest) {
    return (basic ? CURLAUTH_BASIC : 0) | (digest ? CURLAUTH_DIGEST : 0);
}
#endif
