// Test-only map module (tests/modules): dbserver_init dies (SIGKILL raised) when its
// options are "crash", and succeeds otherwise; lookups answer not found. For the test that
// a module crashing at load cannot take the master down (the master checks maps in a child).
#include <signal.h>

#include <cstddef>
#include <cstring>

extern "C" int dbserver_init(char* options) {
  // SIGKILL rather than SIGSEGV: a sanitized build would report a SEGV as a finding.
  if (options != nullptr && std::strcmp(options, "crash") == 0) ::raise(SIGKILL);
  return 0;
}

extern "C" int dbserver_get(const char* key, const char* options, char** str_return,
                            std::size_t* len_return) {
  (void)key;
  (void)options;
  (void)str_return;
  (void)len_return;
  return -2;
}
