/*
 * ir.c: graph building, the text and Graphviz printers, and the verifier.
 * The printers are deterministic (nodes in list order, attributes in a fixed
 * order), so golden files can diff them.
 */
#include "ir.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	int lo, hi;
	IrFamily fam;
} optab[] = {
#define OP(id, lo, hi, fam, name) { name, lo, hi, FAM_##fam },
#include "ops.def"
#undef OP
};

const char *ir_op_name(IrOp op) { return optab[op].name; }
IrFamily ir_op_family(IrOp op) { return optab[op].fam; }
int ir_op_min_arity(IrOp op) { return optab[op].lo; }
int ir_op_max_arity(IrOp op) { return optab[op].hi; }

IrGraph *ir_new_graph(Arena *a, const char *name, SrcLoc loc)
{
	IrGraph *g = arena_alloc(a, sizeof *g);
	g->arena = a;
	g->name = name;
	g->loc = loc;
	return g;
}

IrNode *ir_new_node(IrGraph *g, IrOp op, int nin, IrNode *const *in, SrcLoc loc)
{
	if (g->nnodes == g->cap) {
		int cap = g->cap ? g->cap * 2 : 64;
		g->nodes = arena_grow(g->arena, g->nodes, (size_t)g->nnodes, (size_t)cap, sizeof(IrNode *));
		g->cap = cap;
	}
	IrNode *n = arena_alloc(g->arena, sizeof *n);
	n->id = g->nnodes;
	n->op = op;
	n->nin = nin;
	n->in = arena_alloc(g->arena, sizeof(IrNode *) * (size_t)(nin ? nin : 1));
	for (int i = 0; i < nin; i++)
		n->in[i] = in[i];
	n->loc = loc;
	n->dtype = DT_F32;
	n->batched = true;
	n->shape.rank = -1;
	g->nodes[g->nnodes++] = n;
	return n;
}

IrNode *ir_new_source(IrGraph *g, IrOp op, const char *name, SrcLoc loc)
{
	IrNode *n = ir_new_node(g, op, 0, NULL, loc);
	n->name = name;
	n->batched = op == IR_INPUT || op == IR_TARGET;
	return n;
}

bool shape_poisoned(Shape s) { return s.rank < 0; }

Shape shape_poison(void)
{
	Shape s = { .rank = -1 };
	return s;
}

Shape shape_make(int rank, const int64_t *d)
{
	Shape s = { .rank = rank };
	for (int i = 0; i < rank; i++)
		s.d[i] = d[i];
	return s;
}

bool shape_eq(Shape a, Shape b)
{
	if (a.rank != b.rank)
		return false;
	for (int i = 0; i < a.rank; i++)
		if (a.d[i] != b.d[i])
			return false;
	return true;
}

int64_t ir_numel(const IrNode *n)
{
	int64_t k = 1;
	for (int i = 0; i < n->shape.rank; i++)
		k *= n->shape.d[i];
	return k;
}

const char *shape_str(Shape s)
{
	static char bufs[4][96];
	static int next;
	char *b = bufs[next++ % 4];
	if (s.rank < 0)
		return strcpy(b, "[?]");
	size_t k = 0;
	b[k++] = '[';
	for (int i = 0; i < s.rank; i++)
		k += (size_t)snprintf(b + k, 96 - k, "%s%" PRId64, i ? ", " : "", s.d[i]);
	snprintf(b + k, 96 - k, "]");
	return b;
}

static void print_type(FILE *f, const IrNode *n)
{
	fprintf(f, "%s[", n->dtype == DT_F32 ? "f32" : "i64");
	if (n->batched)
		fprintf(f, "N%s", n->shape.rank != 0 ? "," : "");	/* unshaped: [N,?] */
	for (int i = 0; i < n->shape.rank; i++)
		fprintf(f, "%s%" PRId64, i ? "," : "", n->shape.d[i]);
	if (n->shape.rank < 0)
		fprintf(f, "?");
	fprintf(f, "]");
}

static void print_pair(FILE *f, const char *key, const int *v)
{
	if (v[0] == v[1])
		fprintf(f, " %s=%d", key, v[0]);
	else
		fprintf(f, " %s=[%d,%d]", key, v[0], v[1]);
}

/* attributes that matter for each family, in a fixed order */
static void print_attrs(FILE *f, const IrNode *n)
{
	const IrAttrs *a = &n->a;
	switch (n->op) {
	case IR_DENSE:
		fprintf(f, " units=%" PRId64, a->units);
		break;
	case IR_CONV2D:
	case IR_CONV_T2D:
		fprintf(f, " filters=%" PRId64, a->units);
		print_pair(f, "kernel", a->kernel);
		print_pair(f, "stride", a->stride);
		fprintf(f, " pad=[%d,%d,%d,%d]", a->pad[0], a->pad[1], a->pad[2], a->pad[3]);
		print_pair(f, "dilation", a->dilation);
		if (n->op == IR_CONV_T2D)
			print_pair(f, "output_pad", a->out_pad);
		else
			fprintf(f, " groups=%d", a->groups);
		break;
	case IR_MAXPOOL:
	case IR_AVGPOOL:
		print_pair(f, "kernel", a->kernel);
		print_pair(f, "stride", a->stride);
		fprintf(f, " pad=[%d,%d,%d,%d]", a->pad[0], a->pad[1], a->pad[2], a->pad[3]);
		break;
	case IR_BATCHNORM:
		fprintf(f, " momentum=%g eps=%g", a->momentum, a->eps);
		break;
	case IR_RSQRT:
		fprintf(f, " eps=%g", a->eps);
		break;
	case IR_UPSAMPLE:
		print_pair(f, "scale", a->up);
		fprintf(f, " mode=%s", a->mode == UP_BILINEAR ? "bilinear" : "nearest");
		break;
	case IR_DROPOUT:
		fprintf(f, " p=%g", a->p);
		break;
	case IR_LEAKY_RELU:
		fprintf(f, " slope=%g", a->alpha);
		break;
	case IR_ELU:
		fprintf(f, " alpha=%g", a->alpha);
		break;
	case IR_SCALE:
		fprintf(f, " by=%g", a->scale);
		break;
	case IR_TARGET:
		if (a->classes)
			fprintf(f, " classes=%" PRId64, a->classes);
		break;
	default:
		break;
	}
}

void ir_print(FILE *f, const IrGraph *g)
{
	fprintf(f, "graph %s {\n", g->name);
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		fprintf(f, "  %%%d = %s", n->id, ir_op_name(n->op));
		if (n->name)
			fprintf(f, " \"%s\"", n->name);
		for (int k = 0; k < n->nin; k++)
			fprintf(f, "%s%%%d", k ? ", " : " ", n->in[k]->id);
		print_attrs(f, n);
		fprintf(f, " : ");
		print_type(f, n);
		if (n->layer)
			fprintf(f, "  # %s", n->layer);
		fprintf(f, "\n");
	}
	for (int i = 0; i < g->noutputs; i++)
		fprintf(f, "  output \"%s\" = %%%d\n", g->output_names[i], g->outputs[i]->id);
	if (g->loss)
		fprintf(f, "  loss = %%%d\n", g->loss->id);
	fprintf(f, "}\n");
}

void ir_print_dot(FILE *f, const IrGraph *g)
{
	fprintf(f, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n", g->name);
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		const char *style = n->op == IR_PARAM || n->op == IR_BUFFER ? ", style=dashed" :
				    n->op == IR_INPUT || n->op == IR_TARGET ? ", style=bold" : "";
		fprintf(f, "  n%d [label=\"%s\\n%s\\n", n->id, n->name ? n->name : n->layer ? n->layer : "",
			ir_op_name(n->op));
		print_type(f, n);
		fprintf(f, "\"%s];\n", style);
		for (int k = 0; k < n->nin; k++)
			fprintf(f, "  n%d -> n%d;\n", n->in[k]->id, n->id);
	}
	for (int i = 0; i < g->noutputs; i++)
		fprintf(f, "  out%d [label=\"output %s\", shape=oval];\n  n%d -> out%d;\n", i,
			g->output_names[i], g->outputs[i]->id, i);
	if (g->loss)
		fprintf(f, "  loss [label=\"loss\", shape=oval];\n  n%d -> loss;\n", g->loss->id);
	fprintf(f, "}\n");
}

static const char *fail(char *buf, size_t n, const char *fmt, int id, const char *what)
{
	snprintf(buf, n, fmt, id, what);
	return buf;
}

static bool in_graph(const IrGraph *g, const IrNode *n)
{
	return n && n->id >= 0 && n->id < g->nnodes && g->nodes[n->id] == n;
}

/* node-local invariants: arity, order, shapes, who is batched */
static const char *verify_node(const IrGraph *g, const IrNode *n, char *buf, size_t sz)
{
	int lo = ir_op_min_arity(n->op), hi = ir_op_max_arity(n->op);
	if (n->nin < lo || (hi >= 0 && n->nin > hi))
		return fail(buf, sz, "%%%d: %s has the wrong number of inputs", n->id, ir_op_name(n->op));
	for (int k = 0; k < n->nin; k++)
		if (!in_graph(g, n->in[k]) || n->in[k]->id >= n->id)
			return fail(buf, sz, "%%%d: input %s is not an earlier node", n->id, "");
	if (shape_poisoned(n->shape) || n->shape.rank > IR_MAX_RANK)
		return fail(buf, sz, "%%%d: %s has no shape", n->id, ir_op_name(n->op));
	for (int i = 0; i < n->shape.rank; i++)
		if (n->shape.d[i] < 1)
			return fail(buf, sz, "%%%d: %s has an empty dimension", n->id, ir_op_name(n->op));
	if (ir_is_state(n) && (n->batched || !n->name))
		return fail(buf, sz, "%%%d: parameter %s is batched or unnamed", n->id, n->name ? n->name : "");
	if (n->op == IR_TARGET && n->a.classes && (n->dtype != DT_I64 || n->shape.rank != 0))
		return fail(buf, sz, "%%%d: %s class target is not an i64 scalar", n->id, "");
	if (ir_op_family(n->op) == FAM_LOSS && (n->batched || n->shape.rank != 0))
		return fail(buf, sz, "%%%d: loss %s is not an unbatched scalar", n->id, ir_op_name(n->op));
	return NULL;
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603u;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211u;
	return h;
}

/* parameter and buffer names are unique: a hash set, so a model with a
 * million layers verifies in linear time (call after verify_node: names set) */
static const char *verify_unique_state(const IrGraph *g, char *buf, size_t sz)
{
	size_t cap = 16;
	while (cap < 2 * (size_t)g->nnodes)
		cap *= 2;
	const IrNode **set = calloc(cap, sizeof *set);
	if (!set) {
		fprintf(stderr, "nnc: out of memory\n");
		exit(1);
	}
	const char *bad = NULL;
	for (int i = 0; i < g->nnodes && !bad; i++) {
		const IrNode *n = g->nodes[i];
		if (!ir_is_state(n))
			continue;
		size_t k = (size_t)name_hash(n->name) & (cap - 1);
		while (set[k] && strcmp(set[k]->name, n->name))
			k = (k + 1) & (cap - 1);
		if (set[k])
			bad = fail(buf, sz, "%%%d: parameter name %s is not unique", n->id, n->name);
		else
			set[k] = n;
	}
	free(set);
	return bad;
}

const char *ir_verify(const IrGraph *g, char *buf, size_t sz)
{
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (!n || n->id != i)
			return fail(buf, sz, "node %d: id out of place%s", i, "");
		const char *e = verify_node(g, n, buf, sz);
		if (e)
			return e;
	}
	const char *dup = verify_unique_state(g, buf, sz);
	if (dup)
		return dup;
	for (int i = 0; i < g->noutputs; i++)
		if (!in_graph(g, g->outputs[i]) || !g->output_names[i])
			return fail(buf, sz, "output %d: %s not a node of the graph", i, "is");
	if (g->loss && (!in_graph(g, g->loss) || g->loss->batched || g->loss->shape.rank != 0))
		return fail(buf, sz, "loss %%%d: %s", g->loss->id, "not an unbatched scalar of the graph");
	return NULL;
}
