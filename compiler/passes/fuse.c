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
 *
 * Channel groups: batchnorm's training kernels each loop over the channels
 * and read whole channels, and several of them read the same ones. Those
 * over one input share one loop over the channels (n->cgroup), where the
 * batch statistics are computed once: batchnorm_train with the
 * bn_running_update of its input; batchnorm_dx with the batchnorm_dw of the
 * same gradient and input, the channel_sum of that gradient (the batchnorm
 * bias's gradient) and the channel_sum of its own result (the gradient of a
 * bias just before the batchnorm). A channel group runs where its first
 * member stands, so every input from outside the group must come before it.
 *
 * Updates as epilogues: an optimizer update is element-wise, so the kernel
 * that computes its gradient element by element, with one writer per element
 * (channel_sum, batch_sum, conv_dw's final sum, batchnorm_dw), can update the
 * parameter's element as soon as it has the gradient's (n->host). That runs
 * the update where the gradient's kernel stands instead of at the end, so
 * every other reader of the parameter (the forward, the data gradients) must
 * come before, and the gradient must have no other user.
 *
 * A batch_sum or channel_sum (a bias's gradient) of an element-wise value
 * sums in the loop that computes it, turned to run over the sum's elements
 * (n->tail); for a channel_sum, the pooling gradient the value alone reads
 * fills each plane in that loop just before (n->host). A maxpool or avgpool of a convolution's result runs in the
 * convolution's sample loop (n->host), and so does an element-wise op of the pooling's result, its only user. A cross_entropy runs in the kernel of its gradient, cross_entropy_bwd,
 * when every user of the loss comes after that (n->host as well).
 *
 * Needs: shapes. Sets: n->group (> 0 for members of groups of two or more,
 * numbered by the group's first member), n->cgroup (> 0 for members of
 * channel groups: the first member's id + 1), n->host (an update fused into
 * its gradient's kernel: that node's id + 1). Keeps: the node list (adds or
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

enum { MAX_CHANNEL_MEMBERS = 16 };

/* a channel_sum of v over the C channels of a batchnorm input */
static bool channel_sum_of(const IrNode *u, const IrNode *v, int64_t c)
{
	return u->op == IR_CHANNEL_SUM && u->in[0] == v && v->batched && ir_numel(u) == c;
}

/* puts the candidates m[0..nm) in one channel group when their inputs from
 * outside come before the first of them; returns the members joined */
static int channel_group(IrNode **m, int nm)
{
	int first = m[0]->id;
	for (int i = 1; i < nm; i++)
		if (m[i]->id < first)
			first = m[i]->id;
	for (int i = 0; i < nm; i++)
		for (int k = 0; k < m[i]->nin; k++) {
			bool member = false;
			for (int j = 0; j < nm; j++)
				member |= m[i]->in[k] == m[j];
			if (!member && m[i]->in[k]->id >= first)
				return 0;
		}
	for (int i = 0; i < nm; i++)
		m[i]->cgroup = first + 1;
	return nm - 1;
}

static int channel_groups(IrGraph *g, const PassUses *u)
{
	int joined = 0;
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *n = g->nodes[i], *m[MAX_CHANNEL_MEMBERS] = { n };
		int nm = 1;
		if (n->op == IR_BATCHNORM_TRAIN) {
			const IrNode *x = n->in[0];
			for (int k = u->off[x->id]; k < u->off[x->id + 1] && nm < MAX_CHANNEL_MEMBERS; k++)
				if (u->use[k]->op == IR_BN_UPDATE && u->use[k]->in[0] == x && !u->use[k]->cgroup)
					m[nm++] = u->use[k];
		} else if (n->op == IR_BN_DX) {
			const IrNode *gr = n->in[0], *x = n->in[1];
			int64_t c = x->shape.d[0];
			for (int k = u->off[gr->id]; k < u->off[gr->id + 1] && nm < MAX_CHANNEL_MEMBERS; k++) {
				IrNode *v = u->use[k];
				if (v->cgroup || v == n)
					continue;
				if ((v->op == IR_BN_DW && v->in[1] == x && v->a.eps == n->a.eps) || channel_sum_of(v, gr, c))
					m[nm++] = v;
			}
			for (int k = u->off[n->id]; k < u->off[n->id + 1] && nm < MAX_CHANNEL_MEMBERS; k++)
				if (channel_sum_of(u->use[k], n, c) && !u->use[k]->cgroup)
					m[nm++] = u->use[k];
		}
		if (nm > 1)
			joined += channel_group(m, nm);
	}
	return joined;
}

static bool step_update(const IrNode *n)
{
	return n->op == IR_SGD_STEP || n->op == IR_ADAGRAD_STEP || n->op == IR_RMSPROP_STEP || n->op == IR_ADAM_STEP;
}

static int update_epilogues(IrGraph *g, const PassUses *u)
{
	int fused = 0;

	for (int i = 0; i < g->nnodes; i++) {
		IrNode *n = g->nodes[i], *p = n->in[0], *gr = n->nin > 1 ? n->in[1] : NULL;
		if (!step_update(n) || gr->group || u->off[gr->id + 1] - u->off[gr->id] != 1 ||
		    !(gr->op == IR_CHANNEL_SUM || gr->op == IR_BATCH_SUM || gr->op == IR_CONV_DW || gr->op == IR_BN_DW))
			continue;
		int at = gr->tail ? gr->tail - 1 : gr->cgroup ? gr->cgroup - 1 : gr->id;	/* where the gradient's kernel runs */
		bool ok = true;
		for (int k = u->off[p->id]; k < u->off[p->id + 1]; k++) {
			const IrNode *r = u->use[k];	/* a reader of the parameter: before, or in the group (which updates last) */
			ok &= r == n || r->id < at || (gr->cgroup && r->cgroup == gr->cgroup);
		}
		for (int s = 2; s < n->nin; s++)	/* the optimizer's state is the update's alone */
			ok &= u->off[n->in[s]->id + 1] - u->off[n->in[s]->id] == 1;
		if (ok) {
			n->host = gr->id + 1;
			fused++;
		}
	}
	return fused;
}

/* a batch_sum or channel_sum of an element-wise value sums in the loop that
 * computes the value (the last of its group, or alone), run over the sum's
 * elements: columns of [n, e], channels of [n, C, ...] */
static int reduction_tails(IrGraph *g, const PassUses *u)
{
	int fused = 0;
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *r = g->nodes[i], *v = r->in[0];
		if ((r->op != IR_BATCH_SUM && r->op != IR_CHANNEL_SUM) || r->cgroup || !fusible(v) || !v->batched)
			continue;
		if (v->group) {
			const IrNode *h = g->nodes[v->group - 1];
			bool last = true;
			for (int j = v->id + 1; j < g->nnodes; j++)
				last &= g->nodes[j]->group != v->group;
			if (!last || in_place(h))
				continue;
		}
		bool taken = false;	/* one sum per loop */
		for (int j = 0; j < g->nnodes; j++)
			taken |= g->nodes[j]->tail == v->id + 1;
		if (taken)
			continue;
		r->tail = v->id + 1;
		fused++;
		/* a channel sum's loop runs channel by channel over the samples' planes: the
		 * pooling gradient that v alone reads can fill each plane just before */
		int64_t c = ir_numel(r);
		for (int k = 0; r->op == IR_CHANNEL_SUM && !v->group && k < v->nin; k++) {
			IrNode *p = v->in[k];
			if ((p->op != IR_MAXPOOL_BWD && p->op != IR_AVGPOOL_BWD) || p->host || !p->batched ||
			    ir_numel(p) / c < 8 /* lower.c: SUM_LANES */ || u->off[p->id + 1] - u->off[p->id] != 1)
				continue;
			p->host = v->id + 1;
			fused++;
			break;
		}
	}
	return fused;
}

/* a maxpool or avgpool of a convolution's result (or of the last of the group
 * it heads) runs in the convolution's sample loop, per sample once that sample's
 * result is complete; so does an element-wise op of one input that is the
 * pooling's only user (the ReLU that pass poolrelu put after it) */
static int pools_in_convolutions(IrGraph *g, const PassUses *u)
{
	int fused = 0;
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *p = g->nodes[i], *v = p->in[0];
		if ((p->op != IR_MAXPOOL && p->op != IR_AVGPOOL) || !v->batched)
			continue;
		IrNode *conv = v->group ? g->nodes[v->group - 1] : v;
		if (conv->op != IR_CONV2D)
			continue;
		bool last = true;
		for (int j = v->id + 1; v->group && j < g->nnodes; j++)
			last &= g->nodes[j]->group != v->group;
		if (!last)
			continue;
		p->host = conv->id + 1;
		fused++;
		IrNode *r = u->off[p->id + 1] - u->off[p->id] == 1 ? u->use[u->off[p->id]] : NULL;
		if (r && r->nin == 1 && fusible(r) && !r->group && r->batched && shape_eq(r->shape, p->shape)) {
			r->host = conv->id + 1;
			fused++;
		}
	}
	return fused;
}

/* cross_entropy runs in the kernel of its gradient (same logits, same targets), which
 * computes the rows' log-sum-exp once for both: the loss's users must all come after */
static int loss_with_gradient(IrGraph *g, const PassUses *u)
{
	int fused = 0;
	for (int i = 0; i < g->nnodes; i++) {
		IrNode *b = g->nodes[i];
		if (b->op != IR_CROSS_ENTROPY_BWD)
			continue;
		const IrNode *x = b->in[1];
		for (int k = u->off[x->id]; k < u->off[x->id + 1]; k++) {
			IrNode *ce = u->use[k];
			if (ce->op != IR_CROSS_ENTROPY || ce->in[1] != b->in[2] || ce->host || ce->id > b->id)
				continue;
			bool later = true;
			for (int j = u->off[ce->id]; j < u->off[ce->id + 1]; j++)
				later &= u->use[j]->id > b->id;
			if (later) {
				ce->host = b->id + 1;
				fused++;
				break;
			}
		}
	}
	return fused;
}

int pass_fuse(IrGraph *g)
{
	Fuse f = { .g = g, .u = pass_uses(g) };
	f.head = arena_alloc(g->arena, sizeof(int) * (size_t)(g->nnodes + 2));
	f.next = arena_alloc(g->arena, sizeof(int) * (size_t)(g->nnodes + 2));
	f.size = arena_alloc(g->arena, sizeof(int) * (size_t)(g->nnodes + 2));
	for (int i = 0; i < g->nnodes; i++)
		g->nodes[i]->group = g->nodes[i]->cgroup = g->nodes[i]->host = g->nodes[i]->tail = 0;
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
	fused += channel_groups(g, &f.u);
	fused += reduction_tails(g, &f.u);
	fused += pools_in_convolutions(g, &f.u);
	fused += loss_with_gradient(g, &f.u);
	return fused + update_epilogues(g, &f.u);
}
