// Test module built for a map ABI newer than the host's: the loader must refuse it.
#include <cstddef>

extern "C" {
extern const int switchyard_map_abi_version;  // (extern: a const is otherwise local)
const int switchyard_map_abi_version = 999;
int dbserver_get(const char*, const char*, char**, std::size_t*) { return -2; }
}
