/*
 * summary.c: the model summary of `nnc check`. Reads the shaped graph IR.
 *
 * FLOPs per sample, forward: a multiply-add counts 2 (dense, convolutions);
 * bias adds, element-wise ops and batchnorm's scale-and-shift count 1 or 2
 * per element; pooling counts one per window element; softmax 3 per element;
 * moving data (flatten, concat, nearest upsampling, dropout) counts 0.
 */
#include "summary.h"

#include <inttypes.h>
#include <string.h>

static int64_t numel(const Shape *s)
{
	int64_t k = 1;
	for (int i = 0; i < s->rank; i++)
		k *= s->d[i];
	return k;
}

/* FLOPs of absurd models (2^31 outputs of a 2^31-weight filter) saturate instead of overflowing */
static int64_t sat_mul(int64_t a, int64_t b)
{
	int64_t r;
	return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;
	return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

int64_t summary_node_flops(const IrNode *n)
{
	if (shape_poisoned(n->shape))
		return 0;
	int64_t out = numel(&n->shape), in = n->nin ? numel(&n->in[0]->shape) : 0;
	const IrAttrs *a = &n->a;
	switch (ir_op_family(n->op)) {
	case FAM_SOURCE:
		return 0;
	case FAM_CONTRACT:
		if (n->op == IR_DENSE)
			return 2 * in * a->units + (a->bias ? out : 0);
		if (n->op == IR_CONV2D)	/* per output: C/groups * kh * kw multiply-adds */
			return sat_add(sat_mul(out, 2 * (numel(&n->in[1]->shape) / a->units)), a->bias ? out : 0);
		/* transposed: every input pixel scatters into filters * kh * kw outputs */
		return sat_add(sat_mul(2 * in, a->units * a->kernel[0] * a->kernel[1]), a->bias ? out : 0);
	case FAM_POOL:
		return n->op == IR_GLOBAL_AVGPOOL ? in : out * a->kernel[0] * a->kernel[1];
	case FAM_NORM:
		return 2 * out;
	case FAM_SHAPE:
		return n->op == IR_UPSAMPLE && a->mode == UP_BILINEAR ? 7 * out : 0;
	case FAM_ELEMWISE:
		return n->op == IR_DROPOUT ? 0 : out;
	case FAM_AXIS:
		return 3 * out;
	case FAM_LOSS:
		return 3 * in;
	case FAM_RANDOM:
	case FAM_REDUCE:
	case FAM_GRAD:
	case FAM_UPDATE:
		return out;	/* not in a forward model's table */
	}
	return 0;
}

int64_t summary_node_params(const IrNode *n)
{
	int64_t k = 0;
	for (int i = 0; i < n->nin; i++)
		if (n->in[i]->op == IR_PARAM && !shape_poisoned(n->in[i]->shape))
			k += numel(&n->in[i]->shape);
	return k;
}

/* the table shows batched values: inputs and activations, not targets */
static bool is_row(const IrNode *n)
{
	return n->batched && n->op != IR_TARGET && !ir_is_state(n);
}

ModelStats summary_stats(const IrGraph *g)
{
	ModelStats s = { 0 };
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (n->op == IR_PARAM)
			s.params += numel(&n->shape);
		else if (n->op == IR_BUFFER)
			s.buffers += numel(&n->shape);
		if (!is_row(n))
			continue;
		s.layers++;
		s.flops = sat_add(s.flops, summary_node_flops(n));
		s.act_bytes += 4 * numel(&n->shape);
	}
	return s;
}

/* 1234567 -> "1,234,567" */
static const char *commas(int64_t v, char *buf)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof tmp, "%" PRId64, v < 0 ? -v : v), k = 0;
	if (v < 0)
		buf[k++] = '-';
	for (int i = 0; i < n; i++) {
		if (i && (n - i) % 3 == 0)
			buf[k++] = ',';
		buf[k++] = tmp[i];
	}
	buf[k] = 0;
	return buf;
}

static const char *bytes(int64_t v, char *buf)
{
	char c[40];
	if (v < 10 * 1024)
		sprintf(buf, "%s B", commas(v, c));
	else if (v < 10 * 1024 * 1024)
		sprintf(buf, "%.1f KiB", v / 1024.0);
	else
		sprintf(buf, "%.1f MiB", v / (1024.0 * 1024.0));
	return buf;
}

static const char *row_label(const IrNode *n, char *buf, size_t sz)
{
	snprintf(buf, sz, "%s (%s)", n->layer ? n->layer : "?", ir_op_name(n->op));
	return buf;
}

static void print_train(FILE *f, const TrainConfig *t)
{
	fprintf(f, "Training:        %s(lr=%g", elab_opt_name(t->opt), t->lr);
	switch (t->opt) {
	case OPT_SGD: fprintf(f, ", momentum=%g%s)", t->momentum, t->nesterov ? ", nesterov=true" : ""); break;
	case OPT_ADAGRAD: fprintf(f, ", eps=%g)", t->eps); break;
	case OPT_RMSPROP: fprintf(f, ", alpha=%g, eps=%g, momentum=%g)", t->alpha, t->eps, t->momentum); break;
	case OPT_ADAM: fprintf(f, ", beta1=%g, beta2=%g, eps=%g)", t->beta1, t->beta2, t->eps); break;
	case OPT_ADAMW:
		fprintf(f, ", beta1=%g, beta2=%g, eps=%g, weight_decay=%g)", t->beta1, t->beta2, t->eps, t->weight_decay);
		break;
	}
	fprintf(f, ", batch %" PRId64 ", %" PRId64 " epoch%s, seed %" PRId64, t->batch, t->epochs,
		t->epochs == 1 ? "" : "s", t->seed);
	if (t->l1 > 0 || t->l2 > 0)
		fprintf(f, ", l1=%g, l2=%g", t->l1, t->l2);
	if (t->sched == SCHED_STEP)
		fprintf(f, ", schedule step(every=%" PRId64 ", gamma=%g)", t->step_every, t->step_gamma);
	else if (t->sched == SCHED_COSINE)
		fprintf(f, ", schedule cosine");
	fprintf(f, "%s\n", t->given ? "" : " (defaults: the file has no train section)");
	if (t->data)
		fprintf(f, "Data:            %s\n", t->data);
	if (t->test)
		fprintf(f, "Test data:       %s\n", t->test);
}

void summary_print(FILE *f, const Model *m, const char *file)
{
	const IrGraph *g = m->graph;
	int wl = (int)strlen("Layer (type)"), ws = (int)strlen("Output shape");
	char lab[512], num[40], num2[40];
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (!is_row(n))
			continue;
		int l = (int)strlen(row_label(n, lab, sizeof lab)), s = (int)strlen(shape_str(n->shape));
		wl = l > wl ? l : wl;
		ws = s > ws ? s : ws;
	}
	int width = wl + ws + 30;
	fprintf(f, "Model \"%s\" (%s)\n\n", m->name, file);
	fprintf(f, "%-*s  %-*s  %12s  %14s\n", wl, "Layer (type)", ws, "Output shape", "Params", "FLOPs");
	for (int i = 0; i < width; i++)
		fputc('-', f);
	fputc('\n', f);
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (!is_row(n))
			continue;
		fprintf(f, "%-*s  %-*s  %12s  %14s\n", wl, row_label(n, lab, sizeof lab), ws, shape_str(n->shape),
			commas(summary_node_params(n), num), commas(summary_node_flops(n), num2));
	}
	for (int i = 0; i < width; i++)
		fputc('-', f);
	fputc('\n', f);
	ModelStats s = summary_stats(g);
	fprintf(f, "Parameters:      %s (trainable %s)\n", commas(s.params + 0, num), commas(s.params, num2));
	if (s.buffers)
		fprintf(f, "Buffers:         %s (batchnorm running statistics, not trained)\n", commas(s.buffers, num));
	fprintf(f, "Forward FLOPs:   %s per sample (a multiply-add counts 2)\n", commas(s.flops, num));
	fprintf(f, "Activations:     %s per sample (float32, every layer's output, before memory planning)\n",
		bytes(s.act_bytes, num));
	for (int i = 0; i < g->noutputs; i++)
		fprintf(f, "Output:          %s %s\n", g->output_names[i], shape_str(g->outputs[i]->shape));
	if (g->loss)
		fprintf(f, "Loss:            %s\n", g->loss->layer ? g->loss->layer : ir_op_name(g->loss->op));
	print_train(f, &m->train);
}

void summary_print_params(FILE *f, const IrGraph *g)
{
	for (int i = 0; i < g->nnodes; i++) {
		const IrNode *n = g->nodes[i];
		if (ir_is_state(n))
			fprintf(f, "%s %s %s\n", n->name, shape_str(n->shape), n->op == IR_PARAM ? "param" : "buffer");
	}
}

static void print_ratio(FILE *f, int64_t before, int64_t after)
{
	if (after > 0)
		fprintf(f, "  %7.2fx", (double)before / (double)after);
	else
		fprintf(f, "  %8s", "-");
}

static void print_change(FILE *f, int w, const char *label, const char *what, int64_t pb, int64_t pa, int64_t fb,
			 int64_t fa)
{
	char n1[40], n2[40], n3[40], n4[40];
	fprintf(f, "%-*s  %-20s  %13s  %12s", w, label, what, commas(pb, n1), commas(pa, n2));
	print_ratio(f, pb, pa);
	fprintf(f, "  %14s  %14s", commas(fb, n3), commas(fa, n4));
	print_ratio(f, fb, fa);
	fputc('\n', f);
}

void summary_print_bottleneck(FILE *f, const PassBottleneckLog *log, const IrGraph *after)
{
	int w = (int)strlen("Total (model)");
	for (int i = 0; i < log->n; i++) {
		int l = (int)strlen(log->convs[i].orig->layer);
		w = l > w ? l : w;
	}
	fprintf(f, "Bottleneck rewrite (-fbottleneck=%d): %d convolution%s rewritten\n", log->r, log->n,
		log->n == 1 ? "" : "s");
	if (!log->n)
		fprintf(f, "  (none qualifies: KxK with K >= 3, groups 1, at least %d input and output channels)\n",
			4 * log->r);
	fprintf(f, "%-*s  %-20s  %13s  %12s  %8s  %14s  %14s  %8s\n", w, "Layer", "Rewrite", "Params before",
		"Params after", "Ratio", "FLOPs before", "FLOPs after", "Ratio");
	int width = w + 103;
	for (int i = 0; i < width; i++)
		fputc('-', f);
	fputc('\n', f);
	for (int i = 0; i < log->n; i++) {
		const PassBottleneck *b = &log->convs[i];
		const IrNode *parts[3] = { b->reduce, b->conv, b->expand };
		int64_t pa = 0, fa = 0;
		for (int k = 0; k < 3; k++) {
			pa += summary_node_params(parts[k]);
			fa = sat_add(fa, summary_node_flops(parts[k]));
		}
		char what[96];
		snprintf(what, sizeof what, "%dx%d %" PRId64 "->%" PRId64 "->%" PRId64, b->orig->a.kernel[0],
			 b->orig->a.kernel[1], b->orig->in[0]->shape.d[0], b->conv->a.units, b->orig->a.units);
		print_change(f, w, b->orig->layer, what, summary_node_params(b->orig), pa, summary_node_flops(b->orig), fa);
	}
	for (int i = 0; i < width; i++)
		fputc('-', f);
	fputc('\n', f);
	ModelStats sb = summary_stats(&log->before), sa = summary_stats(after);
	print_change(f, w, "Total (model)", "", sb.params, sa.params, sb.flops, sa.flops);
}
