// Test-only map module (tests/modules): exports dbserver_init but neither dbserver_get nor
// dbserver_get2, so the loader must refuse it. Owner: the map-modules engineer.
extern "C" int dbserver_init(char* options) {
  (void)options;
  return 0;
}
