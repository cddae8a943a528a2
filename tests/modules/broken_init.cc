// Test-only map module (tests/modules): dbserver_init always fails (-1), so loading it is
// fatal; dbserver_get would answer not found (-2). Owner: the map-modules engineer.
#include <cstddef>

extern "C" int dbserver_init(char* options) {
  (void)options;
  return -1;
}

extern "C" int dbserver_get(const char* key, const char* options, char** str_return,
                            std::size_t* len_return) {
  (void)key;
  (void)options;
  (void)str_return;
  (void)len_return;
  return -2;
}
