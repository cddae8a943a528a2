// Metrics: the shared block summed over worker slots (across fork, as the workers write
// it), a dead worker's slot (counters kept and counted on by the next worker, gauges
// zeroed), label names registered once, the Prometheus text, and the HTTP request check.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "config/config.h"
#include "metrics/block.h"
#include "metrics/metrics.h"
#include "metrics/render.h"
#include "metrics/request.h"

namespace m = sy::metrics;
using sy::Protocol;

namespace {

// Points the counting calls at `block`'s slot for the test's scope, and back to none.
struct Counting {
  Counting(m::Block& block, int slot) { m::use(&block, slot); }
  ~Counting() { m::use(nullptr, -1); }
};

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

sy::Config config_with(const std::string& toml) {
  sy::Config c;
  std::string error;
  EXPECT_TRUE(sy::parse_config(toml, "test.conf", &c, &error)) << error;
  return c;
}

}  // namespace

TEST(MetricsBlock, CountersAreSummedOverWorkersInOtherProcesses) {
  auto block = m::Block::create();
  ASSERT_TRUE(block);
  const int a = block->claim_slot();
  const int b = block->claim_slot();
  ASSERT_EQ(a, 0);
  ASSERT_EQ(b, 1);
  for (int slot : {a, b}) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      m::use(block.get(), slot);
      for (int i = 0; i < 10 + slot; ++i) m::connection(Protocol::Imap, true);
      m::login(Protocol::Pop3, m::LoginResult::Failed);
      m::relayed(Protocol::Imaps, 100, 1000);
      m::session(sy::Family::Imap, 1, +2);
      ::_exit(0);
    }
    block->set_owner(slot, pid);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  m::Snapshot s = block->snapshot(0);
  EXPECT_EQ(s.connections[static_cast<int>(Protocol::Imap)][0], 21u);
  EXPECT_EQ(s.logins[static_cast<int>(Protocol::Pop3)][static_cast<int>(m::LoginResult::Failed)], 2u);
  EXPECT_EQ(s.relayed[static_cast<int>(Protocol::Imaps)][0], 200u);
  EXPECT_EQ(s.relayed[static_cast<int>(Protocol::Imaps)][1], 2000u);
  EXPECT_EQ(s.sessions[static_cast<int>(sy::Family::Imap)][1], 4);
  EXPECT_EQ(s.workers, 2u);
}

TEST(MetricsBlock, DeadWorkersSlotKeepsCountersLosesGaugesAndIsReused) {
  auto block = m::Block::create();
  ASSERT_TRUE(block);
  const int a = block->claim_slot();
  const int b = block->claim_slot();
  block->set_owner(a, 1000);
  block->set_owner(b, 1001);
  {
    Counting in(*block, a);
    m::connection(Protocol::Lmtp, true);
    m::lmtp_recipient(m::RcptResult::Delivered);
    m::session(sy::Family::Lmtp, 3, +1);
  }
  {
    Counting in(*block, b);
    m::session(sy::Family::Lmtp, 2, +1);
  }
  block->release_pid(1000);  // the worker of slot a died
  m::Snapshot s = block->snapshot(0);
  EXPECT_EQ(s.connections[static_cast<int>(Protocol::Lmtp)][0], 1u);  // counters stay
  EXPECT_EQ(s.lmtp_recipients[0], 1u);
  EXPECT_EQ(s.sessions[static_cast<int>(sy::Family::Lmtp)][3], 0);  // its gauges went
  EXPECT_EQ(s.sessions[static_cast<int>(sy::Family::Lmtp)][2], 1);  // the other's stay
  EXPECT_EQ(s.workers, 1u);

  // Its replacement gets the freed slot and counts on from where the dead one stopped.
  EXPECT_EQ(block->claim_slot(), a);
  block->set_owner(a, 1002);
  {
    Counting in(*block, a);
    m::connection(Protocol::Lmtp, true);
  }
  EXPECT_EQ(block->snapshot(0).connections[static_cast<int>(Protocol::Lmtp)][0], 2u);
  EXPECT_EQ(block->claim_slot(), 2);  // the next free one
}

TEST(MetricsBlock, WithoutASlotNothingIsCounted) {
  auto block = m::Block::create();
  ASSERT_TRUE(block);
  m::use(block.get(), -1);
  m::connection(Protocol::Imap, true);
  m::use(nullptr, -1);
  m::connection(Protocol::Imap, true);
  EXPECT_EQ(block->snapshot(0).connections[0][0], 0u);
}

TEST(MetricsBlock, NamesAreAddedOnceAndBounded) {
  auto block = m::Block::create();
  ASSERT_TRUE(block);
  EXPECT_EQ(block->find_backend("-"), 0);  // stores a map names
  const int b = block->add_backend("one");
  EXPECT_EQ(block->add_backend("one"), b);
  EXPECT_EQ(block->add_store(b, "127.0.0.1:143"), block->add_store(b, "127.0.0.1:143"));
  EXPECT_EQ(block->add_map("sqlite"), 0);
  EXPECT_EQ(block->add_map("sqlite"), 0);
  for (std::size_t i = 1; i < m::kMaxMaps; ++i) EXPECT_GE(block->add_map("m" + std::to_string(i)), 0);
  EXPECT_EQ(block->add_map("one too many"), -1);
}

TEST(MetricsBlock, LabelsComeFromTheConfigAndSurviveAReload) {
  auto block = m::Block::create();
  ASSERT_TRUE(block);
  m::use(block.get(), -1);
  sy::Config first = config_with(R"(
[[map]]
module = "sqlite"
[[map]]
module = "/usr/lib/x/regex.so"
[[map]]
module = "sqlite"
[backend.north]
host = ["127.0.0.1", "127.0.0.2"]
imap = 1143
)");
  m::register_names(first);
  const int slot = block->claim_slot();
  m::become_worker(slot, first);
  m::map_lookup(2, m::MapResult::Found, std::chrono::microseconds(3000));
  m::map_lookup(1, m::MapResult::TempFail, std::chrono::microseconds(20'000'000));
  m::backend_connect_failed("north");
  m::backend_connect_failed("");
  m::store_down("127.0.0.2:1143", std::chrono::steady_clock::time_point(std::chrono::milliseconds(5000)));

  // A reload adds a back end; the old names keep their labels.
  sy::Config second = config_with(R"(
[[map]]
module = "sqlite"
[backend.south]
host = ["127.0.0.3"]
[backend.north]
host = ["127.0.0.1", "127.0.0.2"]
imap = 1143
)");
  m::register_names(second);
  m::become_worker(slot, second);
  m::backend_connect_failed("south");
  m::backend_connect_failed("north");
  m::use(nullptr, -1);

  m::Snapshot s = block->snapshot(4000);
  ASSERT_EQ(s.maps, (std::vector<std::string>{"sqlite", "regex", "sqlite#2"}));
  EXPECT_EQ(s.map_lookups[2][0], 1u);
  EXPECT_EQ(s.map_lookups[1][2], 1u);
  EXPECT_EQ(s.map_latency[2][2], 1u);  // 3 ms: the le=0.005 bucket
  EXPECT_EQ(s.map_latency[1][m::kBuckets - 1], 1u);  // 20 s: +Inf
  EXPECT_EQ(s.map_latency_us[1], 20'000'000u);
  ASSERT_EQ(s.backends, (std::vector<std::string>{"-", "north", "south"}));
  EXPECT_EQ(s.backend_connect_failures, (std::vector<std::uint64_t>{1, 2, 1}));
  int down = 0;
  for (const auto& st : s.stores) {
    if (!st.up) {
      ++down;
      EXPECT_EQ(st.address, "127.0.0.2:1143");
      EXPECT_EQ(st.backend, "north");
    }
  }
  EXPECT_EQ(down, 1);
  for (const auto& st : block->snapshot(6000).stores) EXPECT_TRUE(st.up) << st.address;  // expired
}

TEST(MetricsRender, PrometheusTextWithHelpTypeAndEscapedLabels) {
  auto block = m::Block::create();
  ASSERT_TRUE(block);
  const int slot = block->claim_slot();
  block->set_owner(slot, 4242);
  block->add_map("sql \"main\"");
  block->add_store(block->add_backend("north"), "[::1]:143");
  {
    Counting in(*block, slot);
    m::connection(Protocol::Imaps, true);
    m::connection(Protocol::Imaps, true);
    m::login(Protocol::Imap, m::LoginResult::Ok);
    m::cache(m::CacheResult::Stale);
    m::tls_handshake(m::TlsSide::Store, false);
    m::session(sy::Family::Pop3, 0, +3);
  }
  m::use(block.get(), -1);
  m::Local local;
  local.holds = 2;
  local.version = "9.9";
  const std::string text = m::render(block->snapshot(0), local);

  EXPECT_TRUE(has_line(text, "# TYPE switchyard_connections_accepted_total counter")) << text;
  EXPECT_TRUE(has_line(text, "# HELP switchyard_connections_accepted_total Connections accepted, by listener protocol."));
  EXPECT_TRUE(has_line(text, "switchyard_connections_accepted_total{protocol=\"imaps\"} 2"));
  EXPECT_TRUE(has_line(text, "switchyard_connections_accepted_total{protocol=\"metrics\"} 0"));
  EXPECT_TRUE(has_line(text, "switchyard_logins_total{protocol=\"imap\",outcome=\"ok\"} 1"));
  EXPECT_TRUE(has_line(text, "switchyard_logins_total{protocol=\"pop3s\",outcome=\"refused\"} 0"));
  EXPECT_EQ(text.find("switchyard_logins_total{protocol=\"lmtp\""), std::string::npos);
  EXPECT_TRUE(has_line(text, "switchyard_sessions{protocol=\"pop3\",phase=\"pre-login\"} 3"));
  EXPECT_TRUE(has_line(text, "switchyard_sessions{protocol=\"lmtp\",phase=\"lmtp-transaction\"} 0"));
  EXPECT_TRUE(has_line(text, "switchyard_lookup_cache_total{result=\"stale\"} 1"));
  EXPECT_TRUE(has_line(text, "switchyard_tls_handshakes_total{side=\"store\",result=\"failed\"} 1"));
  EXPECT_TRUE(has_line(text, "switchyard_holds 2"));
  EXPECT_TRUE(has_line(text, "switchyard_workers 1"));
  EXPECT_TRUE(has_line(text, "switchyard_build_info{version=\"9.9\"} 1"));
  EXPECT_TRUE(has_line(text, "switchyard_backend_up{backend=\"north\",store=\"[::1]:143\"} 1"));
  // A label value with quotes is escaped; the histogram has cumulative buckets to +Inf.
  EXPECT_TRUE(has_line(text, "switchyard_map_lookups_total{map=\"sql \\\"main\\\"\",outcome=\"found\"} 0"));
  EXPECT_TRUE(has_line(text, "# TYPE switchyard_map_lookup_duration_seconds histogram"));
  EXPECT_TRUE(has_line(text, "switchyard_map_lookup_duration_seconds_bucket{map=\"sql \\\"main\\\"\",le=\"+Inf\"} 0"));
  EXPECT_TRUE(has_line(text, "switchyard_map_lookup_duration_seconds_count{map=\"sql \\\"main\\\"\"} 0"));
  // Every sample line belongs to a family announced by # HELP and # TYPE before it.
  std::string family;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    ASSERT_NE(eol, std::string::npos) << "the text ends with a newline";
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.rfind("# TYPE ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
    } else if (line.rfind("# HELP ", 0) != 0) {
      ASSERT_FALSE(family.empty()) << line;
      EXPECT_EQ(line.rfind(family, 0), 0u) << line;
    }
  }
}

TEST(MetricsRender, HistogramBucketsAreCumulative) {
  auto block = m::Block::create();
  ASSERT_TRUE(block);
  block->add_map("sqlite");
  sy::Config c = config_with("[[map]]\nmodule = \"sqlite\"\n");
  m::use(block.get(), -1);
  m::become_worker(block->claim_slot(), c);
  m::map_lookup(0, m::MapResult::Found, std::chrono::microseconds(500));
  m::map_lookup(0, m::MapResult::Found, std::chrono::microseconds(700));
  m::map_lookup(0, m::MapResult::NotFound, std::chrono::microseconds(30'000));
  m::use(nullptr, -1);
  const std::string text = m::render(block->snapshot(0), {});
  EXPECT_TRUE(has_line(text, "switchyard_map_lookup_duration_seconds_bucket{map=\"sqlite\",le=\"0.001\"} 2")) << text;
  EXPECT_TRUE(has_line(text, "switchyard_map_lookup_duration_seconds_bucket{map=\"sqlite\",le=\"0.025\"} 2"));
  EXPECT_TRUE(has_line(text, "switchyard_map_lookup_duration_seconds_bucket{map=\"sqlite\",le=\"0.05\"} 3"));
  EXPECT_TRUE(has_line(text, "switchyard_map_lookup_duration_seconds_bucket{map=\"sqlite\",le=\"+Inf\"} 3"));
  EXPECT_TRUE(has_line(text, "switchyard_map_lookup_duration_seconds_count{map=\"sqlite\"} 3"));
  EXPECT_TRUE(has_line(text, "switchyard_map_lookup_duration_seconds_sum{map=\"sqlite\"} 0.0312"));
  EXPECT_TRUE(has_line(text, "switchyard_map_lookups_total{map=\"sqlite\",outcome=\"not-found\"} 1"));
}

TEST(MetricsRequest, WholeRequestsAreJudged) {
  using m::judge_request;
  EXPECT_EQ(judge_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
  EXPECT_TRUE(judge_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").body);
  EXPECT_EQ(judge_request("GET /metrics?name[]=x HTTP/1.0\r\n\r\n").status, 200);
  EXPECT_EQ(judge_request("GET /metrics HTTP/1.0\n\n").status, 200);
  EXPECT_TRUE(judge_request("HEAD /metrics HTTP/1.0\r\n\r\n").head);
  EXPECT_EQ(judge_request("GET / HTTP/1.1\r\nHost: x\r\n\r\n").status, 404);
  EXPECT_EQ(judge_request("GET /metricsx HTTP/1.0\r\n\r\n").status, 404);
  EXPECT_EQ(judge_request("POST /metrics HTTP/1.0\r\n\r\n").status, 405);
  // Not HTTP/1.x, malformed, no Host in 1.1, bad header.
  EXPECT_EQ(judge_request("GET /metrics HTTP/2.0\r\n\r\n").status, 400);
  EXPECT_EQ(judge_request("GET /metrics\r\n\r\n").status, 400);
  EXPECT_EQ(judge_request("GET  /metrics HTTP/1.0\r\n\r\n").status, 400);
  EXPECT_EQ(judge_request("GET metrics HTTP/1.0\r\n\r\n").status, 400);
  EXPECT_EQ(judge_request("GET /metrics HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(judge_request("GET /metrics HTTP/1.0\r\nno colon\r\n\r\n").status, 400);
  EXPECT_EQ(judge_request(std::string("\x16\x03\x01\x02\x00\r\n\r\n", 9)).status, 400);
}

TEST(MetricsRequest, IncompleteUntilTheHeadersEndAndBounded) {
  const std::string whole = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
  for (std::size_t n = 0; n < whole.size(); ++n)
    EXPECT_EQ(m::judge_request(whole.substr(0, n)).status, 0) << n;
  std::string big = "GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + std::string(m::kMaxRequest, 'a');
  EXPECT_EQ(m::judge_request(big).status, 400);
  EXPECT_EQ(m::judge_request(big + "\r\n\r\n").status, 400);
}

TEST(MetricsRequest, ResponseHeadSaysLengthAndCloses) {
  m::HttpAnswer a{405, "Method Not Allowed"};
  const std::string head = m::response_head(a, "text/plain", 12);
  EXPECT_EQ(head.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0), 0u);
  EXPECT_NE(head.find("\r\nContent-Length: 12\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nConnection: close\r\n\r\n"), std::string::npos);
}

TEST(MetricsListener, TakesLoopbackClientsOnlyUnlessAllowFromSaysMore) {
  sy::Config c = config_with(
      "[[listen]]\nprotocol = \"metrics\"\naddress = \"0.0.0.0:9166\"\n"
      "[[listen]]\nprotocol = \"metrics\"\naddress = \"0.0.0.0:9167\"\nallow_from = [\"10.0.0.5\"]\n");
  ASSERT_EQ(c.listen.size(), 2u);
  EXPECT_EQ(c.listen[0].protocol, Protocol::Metrics);
  ASSERT_TRUE(c.listen[0].allow_from.has_value());
  EXPECT_TRUE(sy::any_contains(*c.listen[0].allow_from, "127.0.0.1"));
  EXPECT_TRUE(sy::any_contains(*c.listen[0].allow_from, "::1"));
  EXPECT_FALSE(sy::any_contains(*c.listen[0].allow_from, "10.0.0.5"));
  EXPECT_TRUE(sy::any_contains(*c.listen[1].allow_from, "10.0.0.5"));
  EXPECT_FALSE(sy::any_contains(*c.listen[1].allow_from, "127.0.0.1"));
}
