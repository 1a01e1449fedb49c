# The seed's "Streaming Large Files" endpoint (../shared/seed/, FastAPI section 1), as written
# there, plus the `app` it assumes: the peer `npm run bench` times a whole-body upload against.
# Run by test/bench/seedPeer.ts in an empty folder (it writes to ./uploads/) with Debian's packages:
#   /usr/bin/python3 -m uvicorn seedFastapi:app --app-dir test/bench --loop uvloop --http httptools
from fastapi import FastAPI, Request, HTTPException
import aiofiles
import hashlib

app = FastAPI()


@app.post("/upload/stream/")
async def stream_upload(request: Request):
    """Handle large uploads without loading into memory"""
    content_length = request.headers.get("content-length")
    if content_length and int(content_length) > 5 * 1024 * 1024 * 1024:  # 5GB
        raise HTTPException(413, "File exceeds 5GB limit")

    filename = request.headers.get("x-filename", "upload.bin")
    hasher = hashlib.sha256()
    total_size = 0

    async with aiofiles.open(f"uploads/{filename}", "wb") as f:
        async for chunk in request.stream():
            await f.write(chunk)
            hasher.update(chunk)
            total_size += len(chunk)

    return {
        "filename": filename,
        "size": total_size,
        "sha256": hasher.hexdigest()
    }
