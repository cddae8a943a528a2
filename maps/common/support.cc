// The shared support of the shipped map modules: see support.h.
#include "support.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sy::maps {

void Reporter::operator()(std::string_view message) const noexcept {
  std::fprintf(stderr, "switchyard %s map: %.*s\n", module_, static_cast<int>(message.size()),
               message.data());
}

std::string_view trim(std::string_view value) noexcept {
  constexpr std::string_view kBlanks = " \t\r\n";
  auto first = value.find_first_not_of(kBlanks);
  if (first == std::string_view::npos) return {};
  return value.substr(first, value.find_last_not_of(kBlanks) - first + 1);
}

std::string format_answer(std::string_view user, std::string_view host, std::string_view port) {
  std::string out;
  if (!user.empty()) out.append(user).append("@");
  if (std::count(host.begin(), host.end(), ':') >= 2 && host.front() != '[')
    out.append("[").append(host).append("]");
  else
    out.append(host);
  if (!port.empty()) out.append(":").append(port);
  return out;
}

int return_answer(std::string_view answer, char** str_return, std::size_t* len_return) noexcept {
  auto* copy = static_cast<char*>(std::malloc(answer.size() + 1));
  if (copy == nullptr) return SWITCHYARD_MAP_OTHER_ERROR;
  if (!answer.empty()) std::memcpy(copy, answer.data(), answer.size());
  copy[answer.size()] = '\0';
  *str_return = copy;
  *len_return = answer.size();
  return SWITCHYARD_MAP_FOUND;
}

}  // namespace sy::maps
