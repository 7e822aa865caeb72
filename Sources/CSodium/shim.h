#ifndef OFFSITE_CSODIUM_SHIM_H
#define OFFSITE_CSODIUM_SHIM_H
#include <sodium.h>
#endif
