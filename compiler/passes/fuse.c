/*
 * fuse.c: puts chains of element-wise ops (activations, their backward
 * kernels, scale, add and mul without broadcasting, the dropout mask's
 * multiply) in one group, so lower.c emits one loop over the elements per
 * group instead of one per op: intermediates stay in registers, and only
 * values used outside the group are stored. A group may be headed by the op
 * that feeds it: a dense layer with a bias (the bias add joins the group's
 * loop), a convolution or a batchnorm (the group runs as an epilogue inside
 * their loops).
 *
 * A group is emitted where its last member stands in the node list (an
 * epilogue: where its head stands), so a node joins a group only when no node
 * outside the group that comes before it uses a member (that user would run
 * before the loop), and, for an epilogue, when its inputs are ready before the
 * head. Dropout masks stay alone: fusing two draws would change the order of
 * the random numbers.
 * Needs: shapes. Sets: n->group (> 0 for members of groups of two or more,
 * numbered by the group's first member). Keeps: the node list (adds or
 * removes no node).
 */
#include "passes.h"

enum { MAX_MEMBERS = 64 };

static bool fusible(const IrNode *n)
{
	switch (n->op) {
	case IR_ADD:
	case IR_MUL:
		for (int k = 0; k < 2; k++)
			if (n->in[k]->batched != n->batched || !shape_eq(n->in[k]->shape, n->shape))
				return false;
		return true;
	case IR_DROPOUT:
	case IR_SCALE:
	case IR_SCALE_BY:
	case IR_RELU:
	case IR_LEAKY_RELU:
	case IR_ELU:
	case IR_SIGMOID:
	case IR_TANH:
	case IR_SOFTPLUS:
	case IR_GELU:
	case IR_RELU_BWD:
	case IR_LEAKY_RELU_BWD:
	case IR_ELU_BWD:
	case IR_SIGMOID_BWD:
	case IR_TANH_BWD:
	case IR_SOFTPLUS_BWD:
	case IR_GELU_BWD:
	case IR_L1_BWD:
		return n->dtype == DT_F32;
	default:
		return false;
	}
}

/* heads whose group lower.c runs inside their own loops, where they stand */
static bool in_place(const IrNode *h)
{
	return h->op == IR_CONV2D || h->op == IR_CONV_T2D || h->op == IR_BATCHNORM || h->op == IR_BATCHNORM_TRAIN;
}

/* a dense layer with a bias can open a group: its GEMM stays a call, and the bias add
 * runs in the group's loop with what follows. A convolution or a batchnorm too: the
 * group runs as an epilogue inside its loops, element by element as they are written. */
static bool head(const IrNode *n)
{
	return n->dtype == DT_F32 && ((n->op == IR_DENSE && n->nin == 3) || in_place(n));
}

/* an in-place head's epilogue runs where the head stands: n's other inputs must be ready then */
static bool ready_for_head(const IrNode *n, int gp, const IrNode *h)
{
	for (int k = 0; k < n->nin; k++)
		if (n->in[k]->group != gp && n->in[k] != h && n->in[k]->id > h->id)
			return false;
	return true;
}

typedef struct Fuse {
	const IrGraph *g;
	PassUses u;
	int *head, *next, *size;	/* members of group g: head[g], next[...]; by node id */
} Fuse;

/* n may join p's group: same element count, and every user of a member that is
 * outside the group comes after n */
static bool may_join(const Fuse *f, const IrNode *n, const IrNode *p)
{
	if (!(fusible(p) || head(p)) || p->batched != n->batched || !shape_eq(p->shape, n->shape))
		return false;
	int gp = p->group ? p->group : p->id + 1;
	const IrNode *h = f->g->nodes[gp - 1];
	if (f->size[gp] >= MAX_MEMBERS || (in_place(h) && !ready_for_head(n, gp, h)))
		return false;
	for (int m = p->group ? f->head[gp] : p->id; m >= 0; m = p->group ? f->next[m] : -1)
		for (int k = f->u.off[m]; k < f->u.off[m + 1]; k++) {
			const IrNode *u = f->u.use[k];
			bool member = p->group ? u->group == gp : false;
			if (!member && u != n && u->id < n->id)
				return false;
		}
	return true;
}

static void join(Fuse *f, IrNode *n, IrNode *p)
{
	if (!p->group) {
		p->group = p->id + 1;
		f->head[p->group] = p->id;
		f->next[p->id] = -1;
		f->size[p->group] = 1;
	}
	int gp = p->group, m = f->head[gp];
	while (f->next[m] >= 0)
		m = f->next[m];
	f->next[m] = n->id;
	f->next[n->id] = -1;
	n->group = gp;
	f->size[gp]++;
}

int pass_fuse(IrGraph *g)
{
	Fuse f = { .g = g, .u = pass_uses(g) };
	f.head = arena_alloc(g->arena, sizeof(int) * (size_t)(g->nnodes + 2));
	f.next = arena_alloc(g->arena, sizeof(int) * (size_t)(g->nnodes + 2));
	f.size = arena_alloc(g->arena, sizeof(int) * (size_t)(g->nnodes + 2));
	for (int i = 0; i < g->nnodes; i++)
		g->nodes[i]->group = 0;
	int fused = 0;
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *n = g->nodes[i];
		if (!fusible(n))
			continue;
		for (int k = 0; k < n->nin; k++)
			if (may_join(&f, n, n->in[k])) {
				join(&f, n, n->in[k]);
				fused++;
				break;
			}
	}
	return fused;
}
