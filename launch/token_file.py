"""./launch/tokenize: text or JSONL into a token file for `data.kind: tokens`.

  ./launch/tokenize --tokenizer tokenizer.json --out corpus.tokens INPUT...
  ./launch/tokenize --train-bpe 8192 --out corpus.tokens INPUT...

Documents: each line of a .jsonl file (the string under --text-key, default "text"); in any
other file, blocks of text between blank lines (--documents files: each whole file). Each
document's ids are followed by the end-of-document id (--eod, else the first of the usual
names the tokenizer knows). --train-bpe trains a byte-level BPE tokenizer of that many ids on
the inputs first (offline; <|endoftext|> is its end of document).

Writes OUT (the layout is in src/data/token_file.h: a header, uint16 ids when the
vocabulary fits, else uint32, then the documents' starts) and the tokenizer that made the
ids beside it as OUT.tokenizer.json, whose CRC-32 the header records. Uses the `tokenizers`
package (Hugging Face's Rust tokenizers): any tokenizer.json a model ships works as it is.
"""
import argparse
import json
import os
import shutil
import struct
import sys
import time
import zlib
from array import array
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

MAGIC = b"TRIAGETK"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQQI12x")  # 64 bytes; field by field in token_file.h
END_OF_DOCUMENT_NAMES = ["<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|im_end|>"]
BATCH = 1000  # documents encoded at once (tokenizers encodes a batch on all cores)


class InputError(Exception):
    """A problem with the inputs, reported as one line naming the file."""


def documents_of(path, whole_files, text_key):
    """Yields the documents of one input file."""
    try:
        if path.suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InputError(f"{path}:{number}: not JSON ({e.msg}); expected one object per line")
                    text = record.get(text_key) if isinstance(record, dict) else None
                    if not isinstance(text, str):
                        raise InputError(f'{path}:{number}: expected a string under "{text_key}" (--text-key)')
                    if text:
                        yield text
            return
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); expected text or JSONL")
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})")
    if whole_files:
        if text.strip():
            yield text
        return
    block = []
    for line in text.splitlines(keepends=True):
        if line.strip():
            block.append(line)
        elif block:
            yield "".join(block)
            block = []
    if block:
        yield "".join(block)


def all_documents(args):
    for path in args.inputs:
        yield from documents_of(path, args.documents == "files", args.text_key)


def train_bpe(args, out_path):
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.train_bpe,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    started = time.monotonic()
    tokenizer.train_from_iterator(all_documents(args), trainer)
    tokenizer.save(str(out_path))
    say(f"trained a byte-level BPE of {tokenizer.get_vocab_size()} ids in {time.monotonic() - started:.1f} s")


def end_of_document_id(tokenizer, wanted, tokenizer_path):
    names = [wanted] if wanted else END_OF_DOCUMENT_NAMES
    for name in names:
        token_id = tokenizer.token_to_id(name)
        if token_id is not None:
            return name, token_id
    raise InputError(f"{tokenizer_path}: no end-of-document token; expected one of {', '.join(names)} (--eod)")


def say(message):
    print(f"[tokenize] {message}", flush=True)


def write_token_file(args, tokenizer, tokenizer_bytes, eod_name, eod):
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    id_bytes = 2 if vocab <= 1 << 16 else 4
    typecode = "H" if id_bytes == 2 else "I"
    if array(typecode).itemsize != id_bytes:
        raise SystemExit(f"error: this Python's array('{typecode}') is not {id_bytes} bytes")
    temporary = args.out.with_name(args.out.name + ".partial")
    starts = array("Q", [0])
    tokens = 0
    started = last_said = time.monotonic()
    with open(temporary, "wb") as f:
        f.write(bytes(HEADER.size))  # rewritten once the counts are known
        batch = []

        def flush():
            nonlocal tokens
            ids = array(typecode)
            for encoding in tokenizer.encode_batch(batch, add_special_tokens=False):
                ids.extend(encoding.ids)
                ids.append(eod)
                tokens += len(encoding.ids) + 1
                starts.append(tokens)
            if sys.byteorder != "little":
                ids.byteswap()
            f.write(ids.tobytes())
            batch.clear()

        for document in all_documents(args):
            batch.append(document)
            if len(batch) == BATCH:
                flush()
                now = time.monotonic()
                if now - last_said > 2:
                    say(f"{len(starts) - 1:,} documents, {tokens:,} tokens, {tokens / (now - started):,.0f} tokens/s")
                    last_said = now
        if batch:
            flush()
        documents = len(starts) - 1
        if documents == 0:
            raise InputError(f"{', '.join(map(str, args.inputs))}: no documents; expected non-empty text")
        if sys.byteorder != "little":
            starts.byteswap()
        f.write(starts.tobytes())
        f.seek(0)
        crc = zlib.crc32(tokenizer_bytes)
        f.write(HEADER.pack(MAGIC, VERSION, id_bytes, vocab, eod, tokens, documents, crc))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, args.out)
    seconds = time.monotonic() - started
    say(
        f"wrote {args.out}: {tokens:,} tokens in {documents:,} documents, {8 * id_bytes}-bit ids, "
        f"vocabulary {vocab}, end of document {eod_name} = {eod}; {seconds:.1f} s"
    )


def main():
    parser = argparse.ArgumentParser(
        prog="./launch/tokenize", description=__doc__.split("\n\n")[0].split(": ", 1)[1]
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="text or .jsonl files")
    parser.add_argument("--out", required=True, type=Path, help="the token file to write")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tokenizer", type=Path, help="a tokenizer.json (as models ship it)")
    source.add_argument("--train-bpe", type=int, metavar="VOCAB", help="train a byte-level BPE of VOCAB ids first")
    parser.add_argument("--documents", choices=["paragraphs", "files"], default="paragraphs",
                        help="in text files: blocks between blank lines (default), or whole files")
    parser.add_argument("--text-key", default="text", help='JSONL: the key of the text (default "text")')
    parser.add_argument("--eod", help="the end-of-document token (default: the first the tokenizer knows of "
                        + ", ".join(END_OF_DOCUMENT_NAMES) + ")")
    args = parser.parse_args()
    tokenizer_out = args.out.with_name(args.out.name + ".tokenizer.json")
    try:
        for path in args.inputs:
            if not path.is_file():
                raise InputError(f"{path}: no such file; expected a text or .jsonl input")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.train_bpe is not None:
            if not 258 <= args.train_bpe <= 1 << 32:
                parser.error(f"--train-bpe {args.train_bpe}: expected at least 258 (256 bytes, the end of document, one merge)")
            train_bpe(args, tokenizer_out)
        else:
            try:
                Tokenizer.from_file(str(args.tokenizer))
            except Exception as e:  # tokenizers raises plain Exceptions for unreadable files
                raise InputError(f"{args.tokenizer}: not a tokenizer.json ({str(e).splitlines()[0]})")
            if args.tokenizer.resolve() != tokenizer_out.resolve():
                shutil.copyfile(args.tokenizer, tokenizer_out)
        tokenizer_bytes = tokenizer_out.read_bytes()
        tokenizer = Tokenizer.from_file(str(tokenizer_out))
        eod_name, eod = end_of_document_id(tokenizer, args.eod, tokenizer_out)
        write_token_file(args, tokenizer, tokenizer_bytes, eod_name, eod)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
