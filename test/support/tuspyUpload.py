"""Uploads a file with tuspy (Debian's python3-tuspy) sending Upload-Checksum on every PATCH.

usage: tuspyUpload.py ENDPOINT TOKEN FILE CHUNK_SIZE good|corrupt
Prints one JSON line: {"url": ..., "offset": ...} or {"error": status, "url": ...}.
With `corrupt`, the third PATCH's checksum is altered after tuspy computed it (one bit of the
digest flipped), as a body damaged on the way would look to the server.
"""
import base64
import json
import sys

from tusclient import client, request
from tusclient.exceptions import TusCommunicationError

endpoint, token, path, chunk_size, mode = sys.argv[1:6]
computed = request.BaseTusRequest.add_checksum
patches = []


def add_checksum(self, chunk):
    computed(self, chunk)
    patches.append(self._request_headers['upload-checksum'])
    if mode == 'corrupt' and len(patches) == 3:
        name, value = self._request_headers['upload-checksum'].split(' ')
        digest = bytearray(base64.b64decode(value))
        digest[0] ^= 1
        self._request_headers['upload-checksum'] = name + ' ' + base64.b64encode(bytes(digest)).decode('ascii')


request.BaseTusRequest.add_checksum = add_checksum
tus = client.TusClient(endpoint, headers={'Authorization': 'Bearer ' + token})
uploader = tus.uploader(path, chunk_size=int(chunk_size), upload_checksum=True,
                        metadata={'filename': 'document.pdf', 'filetype': 'application/pdf'})
try:
    uploader.upload()
    print(json.dumps({'url': uploader.url, 'offset': uploader.offset, 'checksums': patches}))
except TusCommunicationError as error:
    print(json.dumps({'error': error.status_code, 'url': uploader.url, 'offset': uploader.offset, 'checksums': patches}))
