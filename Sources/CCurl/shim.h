#ifndef OFFSITE_CCURL_SHIM_H
#define OFFSITE_CCURL_SHIM_H
#include <curl/curl.h>

/// Wraps curl_version_info(CURLVERSION_NOW), whose argument is a macro-defined enum value.
static inline const char *offsite_curl_version(void) {
    return curl_version_info(CURLVERSION_NOW)->version;
}
#endif
