"""The kit's README.txt, in Vietnamese then English, with the province's own values."""

from __future__ import annotations

_TEXT = """\
commune-monitor agent {version} — bộ cài Windows cho tỉnh {province}
=====================================================================

TIẾNG VIỆT

Bộ cài này chạy không cần Internet và không cần cài Python: mọi thứ nằm trong
commune-agent.msi (Python {python} nhúng, các thư viện, trình khởi chạy, phần mềm
giám sát, khóa gốc của các bản phát hành, chứng chỉ CA của tỉnh). Máy cần Windows
10 hoặc 11 bản 64-bit và kết nối được tới máy chủ thu thập {server}.

1. Kiểm tra tệp (trên máy có PowerShell):
     Get-FileHash .\\commune-agent.msi -Algorithm SHA256
   so với dòng commune-agent.msi trong SHA256SUMS.
2. Cài (mở PowerShell hoặc cmd "Run as administrator"):
     msiexec /i commune-agent.msi /qn ENROLL_TOKEN=<mã đăng ký của xã> /l*v cai-dat.log
   Mã đăng ký do tỉnh cấp cho từng xã (commune-collector enroll-token create); mã không
   bao giờ được ghi vào nhật ký cài đặt. Máy tự đăng ký, ghi cấu hình vào
   C:\\ProgramData\\commune-agent và khởi động dịch vụ CommuneAgent.
   Tùy chọn: SERVER=<địa chỉ https khác>, AGENT_ID=<tên máy>, COMMUNE=<mã xã, từ
   chối mã đăng ký của xã khác>, ENROLL_TOKEN_FILE=<tệp chứa mã đăng ký> thay cho
   ENROLL_TOKEN (mã không nằm trên dòng lệnh; xóa tệp sau khi cài).
3. Chạy lại đúng lệnh trên = sửa chữa (đặt lại mọi tệp, giữ danh tính và dữ liệu).
   Bộ cài mới hơn = nâng cấp. Máy đã tự cập nhật lên bản mới hơn vẫn giữ bản đó.
4. Gỡ (bằng chính tệp đã cài, hoặc từ Cài đặt → Ứng dụng): msiexec /x commune-agent.msi
   /qn (giữ cấu hình và hàng đợi dữ liệu chưa gửi);
   thêm PURGE=1 để xóa cả cấu hình, danh tính và hàng đợi; FORCE_REMOVE=1 khi bộ cài
   trên máy hỏng đến mức không gỡ được.

Bộ cài từ chối khi: không chạy với quyền quản trị; Windows đang chờ khởi động lại
(hãy khởi động lại rồi cài; IGNORE_PENDING_REBOOT=1 để bỏ qua); mã đăng ký sai hoặc
hết hạn; không liên lạc được máy chủ (mã lỗi 1603, nhật ký ghi rõ lý do; chạy lại khi
có mạng). Khi bị từ chối, máy giữ nguyên như trước khi cài.

Máy đã có Python 3.11–3.14: có thể dùng install-agent.ps1 với thư mục wheels\\ (xem
deploy/windows/README.md).

ENGLISH

This kit needs neither the Internet nor Python on the PC: commune-agent.msi holds
an embedded CPython {python}, the libraries, the launcher, the agent, the release
root key and the province's CA. Windows 10 or 11, 64-bit, reaching the collector at
{server}.

1. Check the file: Get-FileHash .\\commune-agent.msi -Algorithm SHA256, compared
   with its line in SHA256SUMS.
2. Install (an elevated prompt, or your deployment tool):
     msiexec /i commune-agent.msi /qn ENROLL_TOKEN=<the commune's token> /l*v install.log
   The token comes from `commune-collector enroll-token create`; it never reaches
   the installer's log. The PC enrolls, writes its config to
   C:\\ProgramData\\commune-agent and starts the CommuneAgent service. Optional:
   SERVER=<another https address>, AGENT_ID=<name>, COMMUNE=<slug: refuses another
   commune's token>, ENROLL_TOKEN_FILE=<a file whose first line is the token>
   instead of ENROLL_TOKEN (off every command line; delete the file afterwards).
3. The same command again repairs (every file put back; identity and data kept). A
   newer MSI upgrades. A PC that updated itself further keeps its newer version.
4. Uninstall (with the file that installed it, or from Settings → Apps):
   msiexec /x commune-agent.msi /qn keeps the config and the outbox of
   unsent data; PURGE=1 removes them too; FORCE_REMOVE=1 when the installed copy is
   too broken to uninstall.

Refusals (exit code 1603, the log says why; the PC is left as it was): not elevated;
a restart pending (restart first, or IGNORE_PENDING_REBOOT=1); a wrong or expired
token; the collector unreachable (run it again when the line is up).

A PC with its own Python 3.11–3.14 can use install-agent.ps1 with the wheels\\ folder
(deploy/windows/README.md).
"""


def text(version: str, province: str, server: str, python: str) -> str:
    return _TEXT.format(version=version, province=province, server=server, python=python)
