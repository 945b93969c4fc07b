"""A process's memory for ``yara_process``: which regions to read, and reading them in chunks.

libyara's own process scan (``yara.match(pid=...)``) reads every mapping, readable or not, and
compares file-backed ones with the file one 4 KiB page at a time; a box's address spaces span
gigabytes of reservations and the same libraries many times over. Here, from one read of
``/proc/PID/smaps``:

* regions the process cannot read, ``[vvar]``/``[vsyscall]``, and private anonymous regions
  with no page resident or swapped (never touched, so all zeros) are skipped; in a private
  anonymous region only partly touched, ``/proc/PID/pagemap`` says which pages are resident or
  swapped (and, to root, which are only the kernel's zero page), and only those stretches are
  read (the rest is zeros), gaps under :data:`GAP`
  read with them; and in what was read, blocks of :data:`ZERO_BLOCK` zero bytes are not scanned
  (pages a process only read are the kernel's zero page, "present" in pagemap);
* a region the process shares with others — a file mapping none of whose pages this process
  has copied (``Anonymous: 0 kB``, so a library patched in memory is not shared), or shared
  memory — gets a ``key`` (device, inode, offset, size): the plugin scans one key once;
* the rest is read from ``/proc/PID/mem`` in chunks of :data:`CHUNK` bytes, each overlapping
  the next by :data:`OVERLAP` so that a string across a chunk edge is still found whole.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

#: Bytes read and scanned at once: regions up to this size are scanned whole.
CHUNK = 32 << 20
#: Bytes each chunk of a larger region repeats from the end of the one before it.
OVERLAP = 64 << 10
#: Untouched pages between two touched stretches that are read rather than skipped.
GAP = 256 << 10
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: Blocks of this many zero bytes (aligned in a chunk) are not scanned.
ZERO_BLOCK = 64 << 10
_ZEROS = bytes(ZERO_BLOCK)
#: pagemap entry bits: page present in RAM, page in swap; and the page frame number.
_PRESENT, _SWAPPED = 1 << 63, 1 << 62
_PRESENT_OR_SWAPPED = _PRESENT | _SWAPPED
_FRAME = (1 << 55) - 1
#: Kernel regions that are not the process's memory (and fail or mislead when read).
_KERNEL_REGIONS = frozenset({"[vvar]", "[vvar_vclock]", "[vsyscall]"})


@dataclass(frozen=True)
class Region:
    """One mapping to scan; ``key`` is set when other processes may map the same bytes."""

    start: int
    end: int
    perms: str
    path: str
    key: tuple[int, int, int, int] | None = None
    #: Bytes resident or swapped; with ``zeros_elsewhere``, the other pages read as zeros.
    resident: int = 0
    zeros_elsewhere: bool = False

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class ProcessPlan:
    """The regions of one process worth scanning, and how many were skipped."""

    pid: int
    regions: list[Region] = field(default_factory=list)
    skipped: int = 0


def plan_process(pid: int) -> ProcessPlan | None:
    """Read ``/proc/PID/smaps`` into a plan; None when the process is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/smaps", "rb") as handle:
            text = handle.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None
    plan = ProcessPlan(pid)
    header: list[str] | None = None
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if " " not in name and header is not None:
            if name in ("Rss", "Swap", "Anonymous"):
                fields[name] = int(value.split()[0])
            continue
        if header is not None:
            _add(plan, header, fields)
        header, fields = line.split(None, 5), {}
    if header is not None:
        _add(plan, header, fields)
    return plan


def _add(plan: ProcessPlan, header: list[str], fields: dict[str, int]) -> None:
    address, perms, offset, device, inode = header[:5]
    path = header[5] if len(header) > 5 else ""
    touched = fields.get("Rss", 0) + fields.get("Swap", 0) > 0
    if not perms.startswith("r") or path in _KERNEL_REGIONS:
        plan.skipped += 1
        return
    inode_number = int(inode)
    if inode_number == 0 and not touched:
        plan.skipped += 1  # anonymous and never touched: zeros
        return
    start, end = (int(part, 16) for part in address.split("-"))
    key = None
    if inode_number and (perms[3] == "s" or fields.get("Anonymous", 0) == 0):
        major, minor = (int(part, 16) for part in device.split(":"))
        key = (os.makedev(major, minor), inode_number, int(offset, 16), end - start)
    resident = (fields.get("Rss", 0) + fields.get("Swap", 0)) * 1024
    plan.regions.append(
        Region(start, end, perms, path, key, resident, zeros_elsewhere=inode_number == 0)
    )


def extents(pid: int, region: Region) -> list[tuple[int, int]]:
    """(start, end) of the stretches of a region worth reading: all of it, unless it is
    anonymous and only partly touched, when pagemap names the touched pages."""
    if not region.zeros_elsewhere or region.resident >= region.size:
        return [(region.start, region.end)]
    first, count = region.start // _PAGE, region.size // _PAGE
    try:
        with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as handle:
            handle.seek(first * 8)
            entries = memoryview(handle.read(count * 8)).cast("Q")
    except (OSError, TypeError, ValueError):
        return [(region.start, region.end)]  # cannot tell: read it all
    zero = zero_page_frame()
    found: list[tuple[int, int]] = []
    for index, entry in enumerate(entries):
        if not entry & _PRESENT_OR_SWAPPED:
            continue
        if entry & _PRESENT and entry & _FRAME == zero:
            continue  # only ever read: the kernel's shared page of zeros
        page = region.start + index * _PAGE
        if found and page - found[-1][1] <= GAP:
            found[-1] = (found[-1][0], page + _PAGE)
        else:
            found.append((page, page + _PAGE))
    return found


@functools.cache
def zero_page_frame() -> int | None:
    """The frame number of the kernel's zero page as pagemap shows it, or None when pagemap
    hides frame numbers (without CAP_SYS_ADMIN): found by reading a fresh private page."""
    probe = mmap.mmap(-1, _PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        if probe[0] != 0:  # the read fault that maps the zero page here
            return None
        address = ctypes.addressof(ctypes.c_char.from_buffer(probe))
        with open("/proc/self/pagemap", "rb", buffering=0) as handle:
            handle.seek(address // _PAGE * 8)
            entry = int.from_bytes(handle.read(8), "little")
    except OSError:
        return None
    finally:
        probe.close()
    frame = entry & _FRAME
    return frame if entry & _PRESENT and frame else None


def chunks(start: int, end: int) -> Iterator[tuple[int, int]]:
    """(address, length) pieces of a stretch: :data:`CHUNK` bytes, overlapping by OVERLAP."""
    address = start
    while True:
        length = min(CHUNK, end - address)
        yield address, length
        if address + length >= end:
            return
        address += length - OVERLAP


def read_into(mem_fd: int, buffer: mmap.mmap | bytearray, address: int, length: int) -> int:
    """Read ``length`` bytes at ``address`` into ``buffer``; the bytes read (fewer when part of
    the range went away or cannot be read, 0 when none can)."""
    view = memoryview(buffer)
    done = 0
    while done < length:
        try:
            count = os.preadv(mem_fd, [view[done:length]], address + done)
        except OSError:
            break  # unmapped since the plan, or memory the kernel will not hand out (EIO)
        if count <= 0:
            break
        done += count
    return done


def nonzero_stretches(buffer: mmap.mmap | bytearray, length: int) -> list[tuple[int, int]]:
    """(start, end) of the parts of ``buffer[:length]`` left once its ZERO_BLOCK-sized blocks
    of zeros are taken out. A block is compared whole (a copy and a ``memcmp`` that stops at the
    first byte that differs): about 10 GB/s, far cheaper than letting YARA scan zeros."""
    found: list[tuple[int, int]] = []
    for low in range(0, length, ZERO_BLOCK):
        high = min(low + ZERO_BLOCK, length)
        if buffer[low:high] == _ZEROS[: high - low]:
            continue
        if found and found[-1][1] == low:
            found[-1] = (found[-1][0], high)
        else:
            found.append((low, high))
    return found
