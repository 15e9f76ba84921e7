/*
 * test_weights.c: safetensors files (runtime/weights.c). Round trips; a
 * state_dict written by PyTorch-side code (a Python snippet run here writes
 * the format by hand, as the safetensors package would) and our files read
 * back by PyTorch; F16, BF16 and F64 conversion, bit for bit against torch
 * and against hand-made bit patterns; every kind of corrupt or hostile file
 * with its exact message; and saves that fail, which must leave no temporary
 * behind and an existing file as it was. Each test works in a scratch folder
 * of its own, made with mkdtemp and removed afterwards.
 */
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "nnrt.h"

static const char python[] = "/usr/bin/python3";
static const char corrupt[] = "the file is corrupt or not safetensors";
static const char other_model[] = "load a file saved from this model";

/* ------------------------------------------------------------ scratch */

typedef struct Scratch {
	char dir[256];
} Scratch;

typedef struct Path {
	char s[512];
} Path;

static Path in(const Scratch *s, const char *name)
{
	Path p;
	snprintf(p.s, sizeof p.s, "%s/%s", s->dir, name);
	return p;
}

static int setup(void **state)
{
	Scratch *s = calloc(1, sizeof *s);
	const char *tmp = getenv("TMPDIR");
	if (!s)
		return -1;
	snprintf(s->dir, sizeof s->dir, "%s/nnrt-weights-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(s->dir)) {
		free(s);
		return -1;
	}
	*state = s;
	return 0;
}

/* removes dir and everything in it (our scratch folders are shallow) */
static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	chmod(dir, 0700);
	while (d && (de = readdir(d))) {
		char p[768];
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		if (unlink(p) != 0)
			remove_tree(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static int teardown(void **state)
{
	Scratch *s = *state;
	remove_tree(s->dir);
	free(s);
	return 0;
}

/* entries in dir other than . and .., so a test sees a temporary left behind */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

/* ------------------------------------------------------------- files */

static void write_bytes(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

/* the whole file, malloc'd, with a NUL after it */
static unsigned char *read_bytes(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long len = ftell(f);
	assert_true(len >= 0);
	rewind(f);
	unsigned char *b = malloc((size_t)len + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	b[len] = 0;
	*n = (size_t)len;
	return b;
}

static void put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++, v >>= 8)
		p[i] = (unsigned char)v;
}

/* a safetensors file from its parts: size, header as given (hlen bytes), data */
static void write_st_n(const char *path, const char *header, size_t hlen, const void *data, size_t ndata)
{
	unsigned char *b = malloc(8 + hlen + ndata + 1);
	assert_non_null(b);
	put_le(b, hlen, 8);
	memcpy(b + 8, header, hlen);
	if (ndata)
		memcpy(b + 8 + hlen, data, ndata);
	write_bytes(path, b, 8 + hlen + ndata);
	free(b);
}

static void write_st(const char *path, const char *header, const void *data, size_t ndata)
{
	write_st_n(path, header, strlen(header), data, ndata);
}

/* little-endian F32 bytes of v[0..n) */
static void f32_bytes(unsigned char *out, const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		put_le(out + 4 * i, u, 4);
	}
}

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static void assert_msg(const NnrtError *err, const char *path, const char *want)
{
	char full[NNRT_ERR_LEN + 512];
	snprintf(full, sizeof full, "%s: %s", path, want);
	assert_string_equal(err->msg, full);
}

/* loading a single tensor w: [2] fails with exactly want after "PATH: " */
static void assert_load_fails(const char *path, const char *want)
{
	float w[2] = { 7, 7 };
	NnrtTensor t = { "w", 1, { 2 }, w };
	NnrtError err = { "" };
	assert_int_equal(nnrt_st_load(path, &t, 1, &err), -1);
	assert_msg(&err, path, want);
	assert_true(w[0] == 7 && w[1] == 7);	/* nothing written before the header was checked */
}

/* ------------------------------------------------------------ python */

/* runs script (written to the scratch folder) with arg; fails the test with
 * its output unless it exits 0 */
static void run_python(const Scratch *s, const char *script, const char *arg)
{
	Path py = in(s, "script.py"), log = in(s, "script.log");
	char cmd[2048];
	write_bytes(py.s, script, strlen(script));
	snprintf(cmd, sizeof cmd, "%s '%s' '%s' > '%s' 2>&1", python, py.s, arg, log.s);
	int status = system(cmd);
	if (status != 0) {
		size_t n;
		unsigned char *out = read_bytes(log.s, &n);
		fail_msg("python failed (status %d):\n%s", status, (char *)out);	/* leaks out: the test stops */
	}
	unlink(py.s);
	unlink(log.s);
}

/* ------------------------------------------------------------- round trips */

static void test_round_trip_is_bit_exact(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "rt.safetensors");
	float w[4 * 1 * 3 * 3], b[4], scalar = -0.0f, got_w[36], got_b[4], got_scalar = 1;
	uint32_t nan_bits = 0x7FC01234, denormal = 0x00000005;
	for (int i = 0; i < 36; i++)
		w[i] = (float)i * 0.37f - 5.0f;
	memcpy(&w[3], &nan_bits, 4);
	memcpy(&w[4], &denormal, 4);
	w[5] = INFINITY;
	w[6] = -FLT_MAX;
	b[0] = 1e-30f, b[1] = -2, b[2] = 0.1f, b[3] = 3e38f;
	NnrtTensor out[] = {
		{ "conv1.weight", 4, { 4, 1, 3, 3 }, w },
		{ "conv1.bias", 1, { 4 }, b },
		{ "scale", 0, { 0 }, &scalar },
		{ "empty", 2, { 0, 3 }, NULL },
	};
	const char *meta[] = { "format", "pt", "note", "caf\xc3\xa9" };
	NnrtError err = { "" };
	assert_int_equal(nnrt_st_save(p.s, out, 4, meta, 2, &err), 0);
	assert_string_equal(err.msg, "");
	/* asked for in another order than saved: lookups go by name */
	NnrtTensor back[] = {
		{ "empty", 2, { 0, 3 }, NULL },
		{ "scale", 0, { 0 }, &got_scalar },
		{ "conv1.bias", 1, { 4 }, got_b },
		{ "conv1.weight", 4, { 4, 1, 3, 3 }, got_w },
	};
	memset(got_w, 0xAB, sizeof got_w);
	assert_int_equal(nnrt_st_load(p.s, back, 4, &err), 0);
	assert_memory_equal(got_w, w, sizeof w);
	assert_memory_equal(got_b, b, sizeof b);
	assert_int_equal(bits(got_scalar), 0x80000000u);
	assert_int_equal(count_entries(s->dir), 1);	/* no temporary left */
}

/* the exact bytes: other readers must get what the format says */
static void test_save_writes_the_documented_layout(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "w.safetensors");
	float w[6] = { 1, 2, 3, 4, 5, -0.5f };
	NnrtTensor t[] = { { "w", 2, { 2, 3 }, w }, { "b", 1, { 1 }, w } };
	const char *meta[] = { "format", "pt" };
	NnrtError err;
	assert_int_equal(nnrt_st_save(p.s, t, 2, meta, 1, &err), 0);
	size_t n;
	unsigned char *f = read_bytes(p.s, &n);
	const char *want = "{\"__metadata__\":{\"format\":\"pt\"},"
			   "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
			   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[24,28]}}";
	size_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | f[i];
	assert_int_equal(hlen % 8, 0);				/* padded so the data is 8-aligned */
	assert_true(hlen >= strlen(want) && hlen < strlen(want) + 8);
	assert_memory_equal(f + 8, want, strlen(want));
	for (size_t i = strlen(want); i < hlen; i++)
		assert_int_equal(f[8 + i], ' ');
	assert_int_equal(n, 8 + hlen + 28);
	unsigned char data[28];
	f32_bytes(data, w, 6);
	f32_bytes(data + 24, w, 1);
	assert_memory_equal(f + 8 + hlen, data, 28);
	free(f);
}

/* quotes, backslashes and control characters are escaped; UTF-8 is kept */
static void test_save_escapes_names(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "esc.safetensors");
	const char *name = "a\"b\\c\n\x01\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	float v = 42, got = 0;
	NnrtTensor t = { name, 0, { 0 }, &v }, back = { name, 0, { 0 }, &got };
	NnrtError err;
	assert_int_equal(nnrt_st_save(p.s, &t, 1, NULL, 0, &err), 0);
	size_t n;
	unsigned char *f = read_bytes(p.s, &n);
	assert_non_null(strstr((char *)f + 8, "{\"a\\\"b\\\\c\\u000a\\u0001\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\":"));
	free(f);
	assert_int_equal(nnrt_st_load(p.s, &back, 1, &err), 0);
	assert_true(got == 42);
}

/* a header spelled the way other writers spell it: spaces, escapes, \u pairs */
static void test_load_accepts_any_json_spelling(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "sp.safetensors");
	float v[2] = { 1.5f, -3 }, got[2] = { 0, 0 };
	unsigned char data[8];
	f32_bytes(data, v, 2);
	write_st(p.s,
		 " {\r\n\t\"__metadata__\" : { \"k\\u00e9y\" : \"v\\\"al\\/\\b\\f\\n\\r\\t\\ud83d\\ude00\" } ,\n"
		 " \"\\u00e9\\u20AC\\uD83D\\uDE00\" : { \"data_offsets\" : [ 0 , 8 ] ,"
		 " \"shape\" : [ 2 ] , \"dtype\" : \"F32\" } }  \n ",
		 data, 8);
	NnrtTensor t = { "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 1, { 2 }, got };
	NnrtError err;
	assert_int_equal(nnrt_st_load(p.s, &t, 1, &err), 0);
	assert_memory_equal(got, v, sizeof v);
}

static void test_save_replaces_a_file_and_keeps_its_mode(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "old.safetensors"), q = in(s, "new.safetensors");
	float v = 3, got = 0;
	NnrtTensor t = { "x", 0, { 0 }, &v }, back = { "x", 0, { 0 }, &got };
	NnrtError err;
	struct stat st;
	write_bytes(p.s, "old contents", 12);
	assert_int_equal(chmod(p.s, 0640), 0);
	assert_int_equal(nnrt_st_save(p.s, &t, 1, NULL, 0, &err), 0);
	assert_int_equal(nnrt_st_load(p.s, &back, 1, &err), 0);
	assert_true(got == 3);
	assert_int_equal(stat(p.s, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	/* a new file gets 0644, not mkstemp's 0600 */
	assert_int_equal(nnrt_st_save(q.s, &t, 1, NULL, 0, &err), 0);
	assert_int_equal(stat(q.s, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(count_entries(s->dir), 2);
}

/* ------------------------------------------------------------- PyTorch */

static const char torch_writer[] =
	"import json, struct, sys, torch\n"
	"out = sys.argv[1]\n"
	"torch.manual_seed(0)\n"
	"class Net(torch.nn.Module):\n"
	"    def __init__(self):\n"
	"        super().__init__()\n"
	"        self.conv1 = torch.nn.Conv2d(1, 4, 3)\n"
	"        self.bn1 = torch.nn.BatchNorm2d(4)\n"
	"        self.dense1 = torch.nn.Linear(4 * 4 * 4, 3)\n"
	"    def forward(self, x):\n"
	"        return self.dense1(torch.relu(self.bn1(self.conv1(x))).flatten(1))\n"
	"m = Net().train()\n"
	"for _ in range(2):\n"
	"    m(torch.randn(5, 1, 6, 6))  # running statistics move, num_batches_tracked = 2\n"
	"sd = m.state_dict()\n"
	"header, blobs, off = {'__metadata__': {'format': 'pt'}}, [], 0\n"
	"kinds = {torch.float32: ('F32', '<f4'), torch.int64: ('I64', '<i8')}\n"
	"for name, t in sd.items():\n"
	"    dtype, np_dtype = kinds[t.dtype]\n"
	"    b = t.contiguous().numpy().astype(np_dtype).tobytes()\n"
	"    header[name] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}\n"
	"    blobs.append(b)\n"
	"    off += len(b)\n"
	"h = json.dumps(header).encode()\n"
	"h += b' ' * (-len(h) % 8)\n"
	"with open(out + '/model.safetensors', 'wb') as f:\n"
	"    f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))\n"
	"with open(out + '/model.f32', 'wb') as f:\n"
	"    for t in sd.values():\n"
	"        if t.dtype == torch.float32:\n"
	"            f.write(t.numpy().astype('<f4').tobytes())\n";

/* the model's tensors, in state_dict order, over one block of floats */
static int model_tensors(NnrtTensor *t, float *block)
{
	static const struct {
		const char *name;
		int rank;
		int64_t shape[4];
	} spec[] = {
		{ "conv1.weight", 4, { 4, 1, 3, 3 } }, { "conv1.bias", 1, { 4 } },
		{ "bn1.weight", 1, { 4 } },	       { "bn1.bias", 1, { 4 } },
		{ "bn1.running_mean", 1, { 4 } },      { "bn1.running_var", 1, { 4 } },
		{ "dense1.weight", 2, { 3, 64 } },     { "dense1.bias", 1, { 3 } },
	};
	int64_t off = 0;
	for (int i = 0; i < 8; i++) {
		int64_t numel = 1;
		t[i] = (NnrtTensor){ spec[i].name, spec[i].rank, { 0 }, block + off };
		for (int d = 0; d < spec[i].rank; d++)
			numel *= t[i].shape[d] = spec[i].shape[d];
		off += numel;
	}
	return (int)off;
}

static void test_load_pytorch_state_dict(void **state)
{
	Scratch *s = *state;
	Path st = in(s, "model.safetensors"), ref = in(s, "model.f32");
	NnrtTensor t[8];
	float block[300];
	int numel = model_tensors(t, block);
	run_python(s, torch_writer, s->dir);
	size_t n, nref;
	unsigned char *file = read_bytes(st.s, &n), *want = read_bytes(ref.s, &nref);
	/* the file has what this test is about: PyTorch's I64 batchnorm counter */
	assert_non_null(strstr((char *)file + 8, "\"bn1.num_batches_tracked\": {\"dtype\": \"I64\", \"shape\": []"));
	assert_int_equal(nref, 4 * (size_t)numel);
	NnrtError err = { "" };
	memset(block, 0xFF, sizeof block);
	assert_int_equal(nnrt_st_load(st.s, t, 8, &err), 0);
	assert_string_equal(err.msg, "");
	for (int i = 0; i < numel; i++) {
		uint32_t u = (uint32_t)want[4 * i] | (uint32_t)want[4 * i + 1] << 8 |
			     (uint32_t)want[4 * i + 2] << 16 | (uint32_t)want[4 * i + 3] << 24;
		assert_int_equal(bits(block[i]), u);
	}
	/* the counter is skipped when not asked for, refused when asked for as a weight */
	float count;
	NnrtTensor nbt = { "bn1.num_batches_tracked", 0, { 0 }, &count };
	t[7] = nbt;
	assert_int_equal(nnrt_st_load(st.s, t, 8, &err), -1);
	assert_msg(&err, st.s, "the file holds 1 tensor the model does not have: dense1.bias; load a file saved from this model");
	t[7] = (NnrtTensor){ "dense1.bias", 1, { 3 }, block };
	NnrtTensor all[9];
	memcpy(all, t, sizeof t);
	all[8] = nbt;
	assert_int_equal(nnrt_st_load(st.s, all, 9, &err), -1);
	assert_msg(&err, st.s, "bn1.num_batches_tracked is stored as I64; nnc reads weights stored as F32, F64, F16 or BF16");
	free(file);
	free(want);
}

static const char torch_reader[] =
	"import json, struct, sys, torch\n"
	"raw = open(sys.argv[1], 'rb').read()\n"
	"n = struct.unpack('<Q', raw[:8])[0]\n"
	"assert n % 8 == 0, n\n"
	"header = json.loads(raw[8:8 + n].decode('utf-8'))\n"
	"assert header.pop('__metadata__') == {'format': 'pt', 'note': 'caf\\u00e9'}, header\n"
	"sd = {}\n"
	"for name, e in header.items():\n"
	"    assert e['dtype'] == 'F32', e\n"
	"    b, end = e['data_offsets']\n"
	"    sd[name] = torch.frombuffer(bytearray(raw[8 + n + b:8 + n + end]), dtype=torch.float32).reshape(e['shape'])\n"
	"assert len(raw) == 8 + n + end\n"
	"m = torch.nn.Linear(4, 3)\n"
	"m.load_state_dict(sd)  # strict: PyTorch's names and shapes\n"
	"assert torch.equal(m.weight, torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 2)\n"
	"assert torch.equal(m.bias, torch.tensor([0.25, -1e-3, 1e30]))\n";

static void test_pytorch_loads_our_file(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "linear.safetensors");
	float w[12], b[3] = { 0.25f, -1e-3f, 1e30f };
	for (int i = 0; i < 12; i++)
		w[i] = (float)i * 0.5f - 2;
	NnrtTensor t[] = { { "weight", 2, { 3, 4 }, w }, { "bias", 1, { 3 }, b } };
	const char *meta[] = { "format", "pt", "note", "caf\xc3\xa9" };
	NnrtError err;
	assert_int_equal(nnrt_st_save(p.s, t, 2, meta, 2, &err), 0);
	run_python(s, torch_reader, p.s);
}

/* ------------------------------------------------------- dtype conversion */

static const char torch_dtypes[] =
	"import json, struct, sys, torch\n"
	"out = sys.argv[1]\n"
	"torch.manual_seed(1)\n"
	"special = [0.0, -0.0, 1.0, -2.5, float('inf'), float('-inf'), float('nan'), 65504.0, 65520.0,\n"
	"           6.0e-8, 3.0e-8, 1e-5, 3.14159, -1e-40, 1e39, 1e-46, 0.1, 3.4028235e38, 3.40282357e38]\n"
	"base = torch.tensor(special, dtype=torch.float64)\n"
	"base = torch.cat([base, torch.randn(332, dtype=torch.float64) * 10,\n"
	"                  torch.randn(332, dtype=torch.float64) * 1e-39,\n"
	"                  torch.randn(332, dtype=torch.float64) * 1e4])\n"
	"assert base.numel() == 1015\n"
	"ts = [('h', 'F16', base.half().reshape(5, 203)), ('b', 'BF16', base.bfloat16()),\n"
	"      ('d', 'F64', base.reshape(7, 145)), ('s', 'F32', base.float())]\n"
	"header, blobs, off = {}, [], 0\n"
	"for name, dt, t in reversed(ts):\n"
	"    if dt in ('F16', 'BF16'):\n"
	"        b = t.view(torch.int16).numpy().astype('<i2').tobytes()\n"
	"    else:\n"
	"        b = t.numpy().astype('<f8' if dt == 'F64' else '<f4').tobytes()\n"
	"    header[name] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}\n"
	"    blobs.append(b)\n"
	"    off += len(b)\n"
	"h = json.dumps(header, separators=(',', ':')).encode()\n"
	"h += b' ' * (-len(h) % 8)\n"
	"with open(out + '/dtypes.safetensors', 'wb') as f:\n"
	"    f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))\n"
	"with open(out + '/dtypes.f32', 'wb') as f:\n"
	"    for name, dt, t in ts:\n"
	"        f.write(t.float().numpy().astype('<f4').tobytes())\n";

/* F16, BF16 and F64 become exactly the floats torch's .float() makes */
static void test_conversions_match_torch(void **state)
{
	Scratch *s = *state;
	Path st = in(s, "dtypes.safetensors"), ref = in(s, "dtypes.f32");
	enum { N = 1015 };
	float *got = malloc(4 * N * sizeof *got);
	assert_non_null(got);
	NnrtTensor t[] = {
		{ "h", 2, { 5, 203 }, got },
		{ "b", 1, { N }, got + N },
		{ "d", 2, { 7, 145 }, got + 2 * N },
		{ "s", 1, { N }, got + 3 * N },
	};
	run_python(s, torch_dtypes, s->dir);
	size_t n;
	unsigned char *want = read_bytes(ref.s, &n);
	assert_int_equal(n, 4 * 4 * N);
	NnrtError err;
	assert_int_equal(nnrt_st_load(st.s, t, 4, &err), 0);
	int nans = 0;
	for (int i = 0; i < 4 * N; i++) {
		uint32_t u = (uint32_t)want[4 * i] | (uint32_t)want[4 * i + 1] << 8 |
			     (uint32_t)want[4 * i + 2] << 16 | (uint32_t)want[4 * i + 3] << 24;
		float w;
		memcpy(&w, &u, 4);
		if (isnan(w)) {
			assert_true(isnan(got[i]));	/* payloads may differ; NaN must stay NaN */
			nans++;
			continue;
		}
		if (bits(got[i]) != u)
			fail_msg("element %d (tensor %c): got %a, torch has %a", i, "hbds"[i / N], (double)got[i], (double)w);
	}
	assert_int_equal(nans, 4);
	free(want);
	free(got);
}

/* hand-made bit patterns: the edge cases of each format, and what they mean */
static void test_conversions_of_edge_bit_patterns(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "bits.safetensors");
	static const uint16_t h[] = { 0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x7C00, 0xFC00, 0x8000, 0x7E00 };
	static const uint32_t h_want[] = { 0x3F800000, 0xC0000000, 0x477FE000, 0x33800000, 0x387FC000,
					   0x38800000, 0x7F800000, 0xFF800000, 0x80000000, 0x7FC00000 };
	static const uint16_t b[] = { 0x3F80, 0x4049, 0xFF80, 0x0001 };
	static const uint32_t b_want[] = { 0x3F800000, 0x40490000, 0xFF800000, 0x00010000 };
	static const double d[] = { 0.1, -1e39, 1e-45, 1.0 + 0x1p-24 };
	static const uint32_t d_want[] = { 0x3DCCCCCD, 0xFF800000, 0x00000001, 0x3F800000 };	/* ties to even */
	unsigned char data[20 + 8 + 32];
	for (int i = 0; i < 10; i++)
		put_le(data + 2 * i, h[i], 2);
	for (int i = 0; i < 4; i++)
		put_le(data + 20 + 2 * i, b[i], 2);
	for (int i = 0; i < 4; i++) {
		uint64_t u;
		memcpy(&u, &d[i], 8);
		put_le(data + 28 + 8 * i, u, 8);
	}
	write_st(p.s,
		 "{\"h\":{\"dtype\":\"F16\",\"shape\":[10],\"data_offsets\":[0,20]},"
		 "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[20,28]},"
		 "\"d\":{\"dtype\":\"F64\",\"shape\":[4],\"data_offsets\":[28,60]}}",
		 data, sizeof data);
	float gh[10], gb[4], gd[4];
	NnrtTensor t[] = { { "h", 1, { 10 }, gh }, { "b", 2, { 2, 2 }, gb }, { "d", 1, { 4 }, gd } };
	NnrtError err;
	assert_int_equal(nnrt_st_load(p.s, t, 3, &err), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(bits(gh[i]), h_want[i]);
	for (int i = 0; i < 4; i++)
		assert_int_equal(bits(gb[i]), b_want[i]);
	for (int i = 0; i < 4; i++)
		assert_int_equal(bits(gd[i]), d_want[i]);
}

/* ------------------------------------------------------- malformed JSON */

typedef struct BadHeader {
	const char *header;
	const char *at;		/* the error is at the first occurrence of this text; NULL: at the end */
	const char *why;
} BadHeader;

#define ENTRY_HEAD "{\"w\":{\"dtype\":\"F32\","

static const BadHeader bad_headers[] = {
	{ "not json", "not", "expected '{' but found 'n'" },
	{ "", NULL, "expected '{' but found the end of the header" },
	{ "true", "true", "expected '{' but found 't'" },
	{ ENTRY_HEAD "\"shape\":[2],\"data_offsets\":[0,8]}", NULL, "expected ',' or '}' but found the end of the header" },
	{ "{\"w\" {}}", "{}}", "expected ':' but found '{'" },
	{ "{\"abc", "\"abc", "string not terminated" },
	{ "{\"abc\\\"}", "\"abc", "string not terminated" },
	{ "{\"a\\q\":1}", "\\q", "invalid escape in a string" },
	{ "{\"\\uDC00\":1}", "\\uDC00", "\\uDC00 is a low surrogate without a high one" },
	{ "{\"\\uD800x\":1}", "\\uD800", "\\uD800 is a high surrogate without a low one" },
	{ "{\"\\uD800\\u0041\":1}", "\\uD800", "\\uD800 is a high surrogate without a low one" },
	{ "{\"\\uD800\":1}", "\\uD800", "\\uD800 is a high surrogate without a low one" },
	{ "{\"\\u12G4\":1}", "\\u12G4", "\\u needs 4 hex digits" },
	{ "{\"\\u12\"}", "\\u12", "\\u needs 4 hex digits" },
	{ "{\"a\\u0000\":1}", "\\u0000", "\\u0000 is not allowed: names are C strings" },
	{ "{\"\xff\":1}", "\xff", "invalid UTF-8 in a string" },
	{ "{\"\xc0\xaf\":1}", "\xc0", "invalid UTF-8 in a string" },		/* overlong '/' */
	{ "{\"\xed\xa0\x80\":1}", "\xed", "invalid UTF-8 in a string" },	/* a surrogate */
	{ "{\"\xf4\x90\x80\x80\":1}", "\xf4", "invalid UTF-8 in a string" },	/* past U+10FFFF */
	{ "{\"a\xe2\x82\":1}", "\xe2", "invalid UTF-8 in a string" },		/* cut short by the quote */
	{ "{\"a\nb\":1}", "\nb", "control character 0x0a in a string" },
	{ ENTRY_HEAD "\"shape\":[2.5]}}", ".5", "expected an integer but found a fraction or exponent" },
	{ ENTRY_HEAD "\"shape\":[2e3]}}", "e3", "expected an integer but found a fraction or exponent" },
	{ ENTRY_HEAD "\"shape\":[-2]}}", "-2", "negative number where a size or offset belongs" },
	{ ENTRY_HEAD "\"shape\":[02]}}", "02", "integer with a leading zero" },
	{ ENTRY_HEAD "\"shape\":[99999999999999999999]}}", "99]", "integer does not fit in 64 bits" },
	{ ENTRY_HEAD "\"shape\":true}}", "true", "expected '[' but found 't'" },
	{ ENTRY_HEAD "\"shape\":[2,]}}", "]", "expected an integer but found ']'" },
	{ ENTRY_HEAD "\"shape\":[2 3]}}", "3]", "expected ',' or ']' but found '3'" },
	{ ENTRY_HEAD "\"shape\":[1,2,3,4,5,6,7,8,9]}}", "9]", "shape has more than 8 entries" },
	{ ENTRY_HEAD "\"shape\":[2],\"data_offsets\":[0]}}", "]}}", "data_offsets needs 2 integers, [begin, end]" },
	{ ENTRY_HEAD "\"shape\":[2],\"data_offsets\":[0,8,16]}}", "16]", "data_offsets has more than 2 entries" },
	{ ENTRY_HEAD "\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", "\"extra\"",
	  "unknown key \"extra\" in the entry of w" },
	{ ENTRY_HEAD "\"shape\":[2],\"dtype\" :\"F64\",\"data_offsets\":[0,8]}}", "\"dtype\" :",
	  "key \"dtype\" appears twice in the entry of w" },
	{ ENTRY_HEAD "\"shape\":[2]}}", "}}", "the entry of w lacks \"data_offsets\"" },
	{ ENTRY_HEAD "}}", "}}", "expected a string but found '}'" },
	{ "{\"w\":[1]}", "[1]", "expected '{' but found '['" },
	{ "{\"w\":{}}", "}}", "the entry of w lacks \"dtype\"" },
	{ ENTRY_HEAD "\"shape\":[],\"data_offsets\":[0,0]},,}", ",}", "expected a string but found ','" },
	{ "{\"__metadata__\":{\"a\":1}}", "1}}", "expected a string but found '1'" },
	{ "{\"__metadata__\":{}, \"__metadata__\" :{}}", "\"__metadata__\" :", "\"__metadata__\" appears twice" },
	{ "{}x", "x", "unexpected text after the header's closing '}'" },
	{ "{} []", "[]", "unexpected text after the header's closing '}'" },
};

/* every malformed header is refused with the file byte where the fault is */
static void test_malformed_headers_name_the_byte(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "bad.safetensors");
	for (size_t i = 0; i < sizeof bad_headers / sizeof bad_headers[0]; i++) {
		const BadHeader *c = &bad_headers[i];
		const char *at = c->at ? strstr(c->header, c->at) : c->header + strlen(c->header);
		char want[400];
		assert_non_null(at);
		snprintf(want, sizeof want, "bad header at byte %zu: %s; %s", 8 + (size_t)(at - c->header), c->why,
			 corrupt);
		write_st(p.s, c->header, NULL, 0);
		assert_load_fails(p.s, want);
	}
}

/* writers pad with spaces; anything else after the object is refused */
static void test_header_padding_must_be_whitespace(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "pad.safetensors");
	float v[2] = { 5, 6 }, got[2];
	unsigned char data[8];
	f32_bytes(data, v, 2);
	char h[128] = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", want[200];
	size_t len = strlen(h);
	write_st_n(p.s, h, len + 6, data, 8);	/* six NULs after the '}' */
	snprintf(want, sizeof want, "bad header at byte %zu: unexpected text after the header's closing '}'; %s", 8 + len,
		 corrupt);
	assert_load_fails(p.s, want);
	strcat(h, "  \t\r\n ");
	write_st(p.s, h, data, 8);
	NnrtTensor t = { "w", 1, { 2 }, got };
	NnrtError err;
	assert_int_equal(nnrt_st_load(p.s, &t, 1, &err), 0);
	assert_memory_equal(got, v, 8);
}

/* ------------------------------------------------------ hostile files */

static void test_file_too_short_for_a_header(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "short.safetensors");
	write_bytes(p.s, "\x10\0\0\0\0", 5);
	assert_load_fails(p.s, "is 5 bytes long, too short for a safetensors header; the file is corrupt or not safetensors");
	write_bytes(p.s, "", 0);
	assert_load_fails(p.s, "is 0 bytes long, too short for a safetensors header; the file is corrupt or not safetensors");
}

static void test_header_size_past_the_file(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "big.safetensors");
	unsigned char f[28] = { 0 };
	put_le(f, 1000, 8);
	memcpy(f + 8, "{}", 2);
	write_bytes(p.s, f, sizeof f);
	assert_load_fails(p.s, "header size 1000 runs past the end of the file (28 bytes); the file is truncated or not safetensors");
	put_le(f, 21, 8);	/* one byte too many */
	write_bytes(p.s, f, sizeof f);
	assert_load_fails(p.s, "header size 21 runs past the end of the file (28 bytes); the file is truncated or not safetensors");
}

/* sizes no weight file has are refused before anything is allocated */
static void test_header_size_absurd(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "absurd.safetensors");
	unsigned char f[16] = { 0 };
	put_le(f, UINT64_MAX, 8);
	write_bytes(p.s, f, sizeof f);
	assert_load_fails(p.s, "header size 18446744073709551615 is over the 100 MB limit; the file is corrupt or not safetensors");
	put_le(f, (100u << 20) + 1, 8);
	write_bytes(p.s, f, sizeof f);
	assert_load_fails(p.s, "header size 104857601 is over the 100 MB limit; the file is corrupt or not safetensors");
}

static void test_unknown_dtype(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "dtype.safetensors");
	write_st(p.s, "{\"w\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", "12345678", 8);
	assert_load_fails(p.s, "bad header at byte 22: tensor w has unknown dtype \"F33\"; "
			       "nnc reads weights stored as F32, F64, F16 or BF16");
}

static void test_offsets_disagree_with_shape(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "size.safetensors");
	write_st(p.s, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", "123456789012", 12);
	assert_load_fails(p.s, "w: shape [2] of F32 needs 8 bytes but data_offsets [0, 12] hold 12; "
			       "the file is corrupt or not safetensors");
	write_st(p.s, "{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", "12345678", 8);
	assert_load_fails(p.s, "w: shape [2] of F16 needs 4 bytes but data_offsets [0, 8] hold 8; "
			       "the file is corrupt or not safetensors");
}

static void test_offsets_end_before_they_begin(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "rev.safetensors");
	write_st(p.s, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "12345678", 8);
	assert_load_fails(p.s, "w has data_offsets [8, 0], which end before they begin; the file is corrupt or not safetensors");
}

static void test_offsets_past_the_file(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "past.safetensors");
	write_st(p.s, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", "12345678", 8);
	assert_load_fails(p.s, "w has data_offsets [4, 12] past the end of the data (8 bytes); the file is truncated or corrupt");
	/* offsets near INT64_MAX: the check must not overflow computing where they are */
	write_st(p.s, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9223372036854775799,9223372036854775807]}}",
		 NULL, 0);
	assert_load_fails(p.s, "w has data_offsets [9223372036854775799, 9223372036854775807] past the end of the data "
			       "(0 bytes); the file is truncated or corrupt");
}

static void test_overlapping_tensors(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "overlap.safetensors");
	write_st(p.s,
		 "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		 "\"v\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
		 "123456789012", 12);
	assert_load_fails(p.s, "w [0, 8] and v [4, 12] overlap in the data; the file is corrupt or not safetensors");
	/* the same bytes for two tensors */
	write_st(p.s,
		 "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		 "\"v\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
		 "12345678", 8);
	assert_load_fails(p.s, "v [0, 8] and w [0, 8] overlap in the data; the file is corrupt or not safetensors");
	/* one inside another, with a tensor between them in offset order */
	write_st(p.s,
		 "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
		 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
		 "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}",
		 "1234567890123456", 16);
	assert_load_fails(p.s, "a [0, 16] and b [4, 8] overlap in the data; the file is corrupt or not safetensors");
}

/* empty tensors own no bytes, so they overlap nothing; gaps are harmless */
static void test_empty_tensors_and_gaps_are_fine(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "empty.safetensors");
	float v[2] = { 1, 2 }, got[2];
	unsigned char data[16] = { 0 };
	f32_bytes(data + 4, v, 2);
	write_st(p.s,
		 "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
		 "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[8,8]}}",
		 data, sizeof data);
	NnrtTensor t[] = { { "w", 1, { 2 }, got }, { "e", 2, { 0, 5 }, NULL } };
	NnrtError err;
	assert_int_equal(nnrt_st_load(p.s, t, 2, &err), 0);
	assert_memory_equal(got, v, 8);
}

static void test_duplicate_names(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "dup.safetensors");
	write_st(p.s,
		 "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		 "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
		 "1234567812345678", 16);
	assert_load_fails(p.s, "w appears twice in the header; the file is corrupt or not safetensors");
}

/* shape products that overflow 64 bits, alone or times the element size */
static void test_shape_product_overflow(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "overflow.safetensors");
	write_st(p.s, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", NULL, 0);
	assert_load_fails(p.s, "w has shape [4294967296, 4294967296], whose size overflows 64 bits; "
			       "the file is corrupt or not safetensors");
	write_st(p.s, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", NULL, 0);
	assert_load_fails(p.s, "w has shape [4611686018427387904], whose size overflows 64 bits; "
			       "the file is corrupt or not safetensors");
}

/* every strict prefix of a good file is refused with a message; no crash */
static void test_every_truncation_is_refused(void **state)
{
	Scratch *s = *state;
	Path good = in(s, "good.safetensors"), cut = in(s, "cut.safetensors");
	float w[2] = { 1, 2 }, got[2];
	NnrtTensor t = { "w", 1, { 2 }, w }, back = { "w", 1, { 2 }, got };
	NnrtError err;
	assert_int_equal(nnrt_st_save(good.s, &t, 1, NULL, 0, &err), 0);
	size_t n;
	unsigned char *f = read_bytes(good.s, &n);
	for (size_t len = 0; len < n; len++) {
		write_bytes(cut.s, f, len);
		err.msg[0] = '\0';
		assert_int_equal(nnrt_st_load(cut.s, &back, 1, &err), -1);
		assert_true(!strncmp(err.msg, cut.s, strlen(cut.s)) && strlen(err.msg) > strlen(cut.s) + 2);
	}
	/* and flipped bytes: either a clean load or a message, under the sanitizers */
	for (size_t i = 0; i < n; i++) {
		f[i] ^= 0x5A;
		write_bytes(cut.s, f, n);
		f[i] ^= 0x5A;
		err.msg[0] = '\0';
		int r = nnrt_st_load(cut.s, &back, 1, &err);
		assert_true(r == 0 || (r == -1 && !strncmp(err.msg, cut.s, strlen(cut.s))));
	}
	free(f);
}

static void test_missing_file_or_folder(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "nope.safetensors");
	assert_load_fails(p.s, "cannot open: No such file or directory; check the path");
	assert_load_fails(s->dir, "is not a regular file; give the path of a .safetensors file");
}

/* ------------------------------------------------ model against file */

static void test_missing_names_are_listed(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "m.safetensors");
	float a[2], b[3], c;
	write_st(p.s, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "12345678", 8);
	NnrtTensor t[] = { { "w", 1, { 2 }, a }, { "dense2.weight", 1, { 3 }, b }, { "dense2.bias", 0, { 0 }, &c } };
	NnrtError err;
	assert_int_equal(nnrt_st_load(p.s, t, 3, &err), -1);
	assert_msg(&err, p.s, "the file lacks 2 tensors the model needs: dense2.weight, dense2.bias; load a file saved from this model");
}

/* a message has room for some names; it counts the rest */
static void test_many_missing_names_are_counted(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "m.safetensors");
	enum { N = 100 };
	char names[N][32];
	NnrtTensor t[N];
	float v;
	write_st(p.s, "{}", NULL, 0);
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof names[i], "layer%02d.weight", i);
		t[i] = (NnrtTensor){ names[i], 0, { 0 }, &v };
	}
	NnrtError err;
	assert_int_equal(nnrt_st_load(p.s, t, N, &err), -1);
	char head[600], tail[100];
	snprintf(head, sizeof head, "%s: the file lacks 100 tensors the model needs: layer00.weight, layer01.weight, ", p.s);
	assert_true(!strncmp(err.msg, head, strlen(head)));
	/* names of 14 bytes joined by ", " fill the 300-byte list (with its NUL)
	 * after 18: 14 + 17 * 16 = 286, and a 19th would need 303 */
	snprintf(tail, sizeof tail, "layer17.weight (and 82 more); %s", other_model);
	assert_true(strlen(err.msg) > strlen(tail));
	assert_string_equal(err.msg + strlen(err.msg) - strlen(tail), tail);
}

static void test_extra_names_are_an_error(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "x.safetensors");
	write_st(p.s,
		 "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		 "\"bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]},"
		 "\"old.weight\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[16,20]},"
		 "\"num_batches_tracked\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[20,24]}}",
		 "123456781234567812341234", 24);
	/* the counter's suffix needs its dot: a bare num_batches_tracked is a tensor like another */
	assert_load_fails(p.s, "the file holds 2 tensors the model does not have: num_batches_tracked, old.weight; "
			       "load a file saved from this model");
}

static void test_shape_mismatch_shows_both_shapes(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "shape.safetensors");
	size_t bytes = 256 * 784 * 4;
	unsigned char *zeros = calloc(1, bytes);
	float *w = malloc(128 * 784 * sizeof *w);
	assert_non_null(zeros);
	assert_non_null(w);
	write_st(p.s, "{\"dense1.weight\":{\"dtype\":\"F32\",\"shape\":[256,784],\"data_offsets\":[0,802816]}}", zeros,
		 bytes);
	NnrtTensor t = { "dense1.weight", 2, { 128, 784 }, w };
	NnrtError err;
	assert_int_equal(nnrt_st_load(p.s, &t, 1, &err), -1);
	assert_msg(&err, p.s, "dense1.weight has shape [256, 784] in the file but the model needs [128, 784]; load a file saved from this model");
	/* same size, other rank */
	t = (NnrtTensor){ "dense1.weight", 3, { 256, 28, 28 }, w };
	assert_int_equal(nnrt_st_load(p.s, &t, 1, &err), -1);
	assert_msg(&err, p.s, "dense1.weight has shape [256, 784] in the file but the model needs [256, 28, 28]; load a file saved from this model");
	free(zeros);
	free(w);
}

static void test_integer_dtype_is_not_a_weight(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "i64.safetensors");
	write_st(p.s, "{\"w\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", "1234567812345678", 16);
	assert_load_fails(p.s, "w is stored as I64; nnc reads weights stored as F32, F64, F16 or BF16");
	write_st(p.s, "{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", "12", 2);
	assert_load_fails(p.s, "w is stored as U8; nnc reads weights stored as F32, F64, F16 or BF16");
}

/* the caller's own mistakes come back as messages too */
static void test_bad_arguments(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "args.safetensors");
	float v[2] = { 0, 0 };
	NnrtError err;
	NnrtTensor rank5 = { "w", 5, { 1, 1, 1, 1 }, v }, nodata = { "w", 1, { 2 }, NULL }, noname = { NULL, 0, { 0 }, v };
	assert_int_equal(nnrt_st_load(p.s, &rank5, 1, &err), -1);
	assert_msg(&err, p.s, "tensor 0 (w) has no name, a rank outside 0..4, a negative or overflowing shape, or no data; "
			      "this is a bug in the caller");
	assert_int_equal(nnrt_st_save(p.s, &nodata, 1, NULL, 0, &err), -1);
	assert_msg(&err, p.s, "tensor 0 (w) has no name, a rank outside 0..4, a negative or overflowing shape, or no data; "
			      "this is a bug in the caller");
	assert_int_equal(nnrt_st_save(p.s, &noname, 1, NULL, 0, &err), -1);
	assert_msg(&err, p.s, "tensor 0 (unnamed) has no name, a rank outside 0..4, a negative or overflowing shape, or no data; "
			      "this is a bug in the caller");
	assert_int_equal(nnrt_st_load(p.s, NULL, -1, &err), -1);
	assert_msg(&err, p.s, "invalid tensor list (n = -1); this is a bug in the caller");
	assert_int_equal(nnrt_st_load(NULL, NULL, 0, &err), -1);
	assert_string_equal(err.msg, "(null): no path given; pass the weights file's path");
	assert_int_equal(count_entries(s->dir), 0);
}

/* ------------------------------------------------------- failed saves */

static void assert_file_is(const char *path, const char *contents)
{
	size_t n;
	unsigned char *f = read_bytes(path, &n);
	assert_int_equal(n, strlen(contents));
	assert_memory_equal(f, contents, n);
	free(f);
}

static void test_save_into_missing_folder(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "nope/w.safetensors");
	float v = 1;
	NnrtTensor t = { "w", 0, { 0 }, &v };
	NnrtError err;
	assert_int_equal(nnrt_st_save(p.s, &t, 1, NULL, 0, &err), -1);
	assert_msg(&err, p.s, "cannot create a temporary file beside it: No such file or directory; "
			      "check that the folder exists and is writable");
	assert_int_equal(count_entries(s->dir), 0);
}

/* a folder where the file should go: the rename fails after the temporary is written */
static void test_save_over_a_folder_removes_the_temporary(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "w.safetensors"), keep = in(s, "w.safetensors/keep");
	float v = 1;
	NnrtTensor t = { "w", 0, { 0 }, &v };
	NnrtError err;
	assert_int_equal(mkdir(p.s, 0755), 0);
	write_bytes(keep.s, "kept", 4);
	assert_int_equal(nnrt_st_save(p.s, &t, 1, NULL, 0, &err), -1);
	assert_msg(&err, p.s, "cannot rename the temporary file to it: Is a directory; "
			      "nothing was changed, check the path and the free space");
	assert_int_equal(count_entries(s->dir), 1);
	assert_int_equal(count_entries(p.s), 1);
	assert_file_is(keep.s, "kept");
	Path slash = in(s, "w.safetensors/");
	assert_int_equal(nnrt_st_save(slash.s, &t, 1, NULL, 0, &err), -1);
	assert_msg(&err, slash.s, "names a folder, not a file; give a file name such as model.safetensors");
	assert_int_equal(count_entries(p.s), 1);
}

/* A write that fails half way (the file size limit: works even as root):
 * the old file stays as it was and the temporary goes. SIGXFSZ is ignored so
 * the write returns EFBIG; nothing is asserted until the limit is restored. */
static void test_failed_write_keeps_the_old_file(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "w.safetensors");
	enum { N = 20000 };
	float *v = calloc(N, sizeof *v);
	NnrtTensor t = { "w", 1, { N }, v };
	NnrtError err;
	struct rlimit old, small;
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_act;
	assert_non_null(v);
	write_bytes(p.s, "old weights", 11);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small = old;
	small.rlim_cur = 4096;
	assert_int_equal(sigaction(SIGXFSZ, &ign, &old_act), 0);
	int set = setrlimit(RLIMIT_FSIZE, &small);
	int r = nnrt_st_save(p.s, &t, 1, NULL, 0, &err);
	setrlimit(RLIMIT_FSIZE, &old);
	sigaction(SIGXFSZ, &old_act, NULL);
	assert_int_equal(set, 0);
	assert_int_equal(r, -1);
	assert_msg(&err, p.s, "cannot write the temporary file beside it: File too large; "
			      "nothing was changed, check the path and the free space");
	assert_file_is(p.s, "old weights");
	assert_int_equal(count_entries(s->dir), 1);
	free(v);
}

/* refused arguments change nothing on disk either */
static void test_refused_save_keeps_the_old_file(void **state)
{
	Scratch *s = *state;
	Path p = in(s, "w.safetensors");
	float v[2] = { 1, 2 };
	NnrtTensor twice[] = { { "w", 0, { 0 }, v }, { "w", 0, { 0 }, v + 1 } };
	NnrtTensor meta_name = { "__metadata__", 0, { 0 }, v }, bad_utf8 = { "w\xff", 0, { 0 }, v };
	const char *meta_twice[] = { "k", "1", "k", "2" };
	NnrtError err;
	write_bytes(p.s, "old weights", 11);
	assert_int_equal(nnrt_st_save(p.s, twice, 2, NULL, 0, &err), -1);
	assert_msg(&err, p.s, "two tensors are named w; give each its own name");
	assert_int_equal(nnrt_st_save(p.s, &meta_name, 1, NULL, 0, &err), -1);
	assert_msg(&err, p.s, "tensor 0 has an invalid name (not UTF-8, or \"__metadata__\"); rename it");
	assert_int_equal(nnrt_st_save(p.s, &bad_utf8, 1, NULL, 0, &err), -1);
	assert_msg(&err, p.s, "tensor 0 has an invalid name (not UTF-8, or \"__metadata__\"); rename it");
	assert_int_equal(nnrt_st_save(p.s, twice, 1, meta_twice, 2, &err), -1);
	assert_msg(&err, p.s, "metadata key \"k\" is given twice; give it once");
	assert_int_equal(nnrt_st_save(p.s, twice, 1, NULL, 1, &err), -1);
	assert_msg(&err, p.s, "invalid metadata (n_meta = 1); this is a bug in the caller");
	assert_file_is(p.s, "old weights");
	assert_int_equal(count_entries(s->dir), 1);
}

/* only meaningful for a user without root's override of permissions */
static void test_save_into_read_only_folder(void **state)
{
	Scratch *s = *state;
	Path ro = in(s, "ro"), p = in(s, "ro/w.safetensors");
	float v = 1;
	NnrtTensor t = { "w", 0, { 0 }, &v };
	NnrtError err;
	if (geteuid() == 0)
		skip();
	assert_int_equal(mkdir(ro.s, 0755), 0);
	write_bytes(p.s, "old weights", 11);
	assert_int_equal(chmod(ro.s, 0555), 0);
	int r = nnrt_st_save(p.s, &t, 1, NULL, 0, &err);
	chmod(ro.s, 0755);
	assert_int_equal(r, -1);
	assert_msg(&err, p.s, "cannot create a temporary file beside it: Permission denied; "
			      "check that the folder exists and is writable");
	assert_file_is(p.s, "old weights");
	assert_int_equal(count_entries(ro.s), 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_round_trip_is_bit_exact),
		T(test_save_writes_the_documented_layout),
		T(test_save_escapes_names),
		T(test_load_accepts_any_json_spelling),
		T(test_save_replaces_a_file_and_keeps_its_mode),
		T(test_load_pytorch_state_dict),
		T(test_pytorch_loads_our_file),
		T(test_conversions_match_torch),
		T(test_conversions_of_edge_bit_patterns),
		T(test_malformed_headers_name_the_byte),
		T(test_header_padding_must_be_whitespace),
		T(test_file_too_short_for_a_header),
		T(test_header_size_past_the_file),
		T(test_header_size_absurd),
		T(test_unknown_dtype),
		T(test_offsets_disagree_with_shape),
		T(test_offsets_end_before_they_begin),
		T(test_offsets_past_the_file),
		T(test_overlapping_tensors),
		T(test_empty_tensors_and_gaps_are_fine),
		T(test_duplicate_names),
		T(test_shape_product_overflow),
		T(test_every_truncation_is_refused),
		T(test_missing_file_or_folder),
		T(test_missing_names_are_listed),
		T(test_many_missing_names_are_counted),
		T(test_extra_names_are_an_error),
		T(test_shape_mismatch_shows_both_shapes),
		T(test_integer_dtype_is_not_a_weight),
		T(test_bad_arguments),
		T(test_save_into_missing_folder),
		T(test_save_over_a_folder_removes_the_temporary),
		T(test_failed_write_keeps_the_old_file),
		T(test_refused_save_keeps_the_old_file),
		T(test_save_into_read_only_folder),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
