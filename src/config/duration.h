// Durations in the config file: "500ms", "60s", "5m", "1h", "2d" or an integer of seconds.
#ifndef SWITCHYARD_CONFIG_DURATION_H
#define SWITCHYARD_CONFIG_DURATION_H

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sy {

using Millis = std::chrono::milliseconds;

// Parses a duration string; nullopt when malformed or negative.
[[nodiscard]] std::optional<Millis> parse_duration(std::string_view text);

// "1500ms", "60s", "5m": the shortest exact form, for messages and -t output.
std::string format_duration(Millis d);

}  // namespace sy

#endif
