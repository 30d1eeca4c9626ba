#!/usr/bin/env bash
# Rebuilds data/fashion-mnist/ from the Debian package dataset-fashion-mnist
# (apt-get install dataset-fashion-mnist), or from any directory holding the four
# original Fashion-MNIST .gz files (pass it as $1).
#
#   train-*: the FIRST 10,000 training images/labels in file order, with the IDX
#            header's item count rewritten from 60000 to 10000.
#   t10k-*:  the full 10,000-image test set, copied byte for byte.
#
# Output is reproducible: gzip -9 -n stores no file name or time stamp.
set -euo pipefail

SRC="${1:-/usr/share/datasets/fashion-mnist}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DST="$HERE/fashion-mnist"
N=10000
ROWS=28
COLS=28

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Decompress the originals to plain files first (so no pipe is cut short under pipefail).
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  gzip -dc "$SRC/$f.gz" > "$TMP/$f"
done

# bytes FILE OFFSET COUNT -> COUNT bytes of FILE starting at OFFSET (GNU dd)
bytes() { dd if="$1" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" status=none; }
# be32 FILE OFFSET -> the big-endian uint32 at OFFSET of FILE, in decimal
be32() { echo $(( 16#$(bytes "$1" "$2" 4 | od -An -tx1 | tr -d ' \n') )); }

check_header() { # FILE MAGIC COUNT [ROWS COLS]
  local f="$1"
  [[ $(be32 "$f" 0) -eq $2 ]] || { echo "$f: bad magic" >&2; exit 1; }
  [[ $(be32 "$f" 4) -eq $3 ]] || { echo "$f: expected $3 items" >&2; exit 1; }
  if [[ $# -eq 5 ]]; then
    [[ $(be32 "$f" 8) -eq $4 && $(be32 "$f" 12) -eq $5 ]] || { echo "$f: expected $4x$5 images" >&2; exit 1; }
  fi
}

check_header "$TMP/train-images-idx3-ubyte" $((0x803)) 60000 $ROWS $COLS
check_header "$TMP/train-labels-idx1-ubyte" $((0x801)) 60000
check_header "$TMP/t10k-images-idx3-ubyte"  $((0x803)) 10000 $ROWS $COLS
check_header "$TMP/t10k-labels-idx1-ubyte"  $((0x801)) 10000

mkdir -p "$DST"
COUNT='\x00\x00\x27\x10'   # 10000 as a big-endian uint32

# images: magic (4) + new count (4) + rows, cols (8) + the first N*ROWS*COLS pixels
{ printf '\x00\x00\x08\x03'; printf "$COUNT"; printf '\x00\x00\x00\x1c\x00\x00\x00\x1c'
  bytes "$TMP/train-images-idx3-ubyte" 16 $(( N * ROWS * COLS ))
} | gzip -9 -n > "$DST/train-images-idx3-ubyte.gz"

# labels: magic (4) + new count (4) + the first N labels
{ printf '\x00\x00\x08\x01'; printf "$COUNT"
  bytes "$TMP/train-labels-idx1-ubyte" 8 $N
} | gzip -9 -n > "$DST/train-labels-idx1-ubyte.gz"

cp "$SRC/t10k-images-idx3-ubyte.gz" "$SRC/t10k-labels-idx1-ubyte.gz" "$DST/"

# sanity: exact decompressed sizes
gzip -dc "$DST/train-images-idx3-ubyte.gz" > "$TMP/subset-images"
gzip -dc "$DST/train-labels-idx1-ubyte.gz" > "$TMP/subset-labels"
[[ $(stat -c %s "$TMP/subset-images") -eq $(( 16 + N * ROWS * COLS )) ]] || { echo "image subset has the wrong size" >&2; exit 1; }
[[ $(stat -c %s "$TMP/subset-labels") -eq $(( 8 + N )) ]] || { echo "label subset has the wrong size" >&2; exit 1; }
cmp <(bytes "$TMP/subset-images" 16 $(( N * ROWS * COLS ))) <(bytes "$TMP/train-images-idx3-ubyte" 16 $(( N * ROWS * COLS )))
cmp <(bytes "$TMP/subset-labels" 8 $N) <(bytes "$TMP/train-labels-idx1-ubyte" 8 $N)
(cd "$DST" && sha256sum ./*.gz)
