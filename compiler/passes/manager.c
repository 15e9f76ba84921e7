/*
 * manager.c: the pass pipeline. The table lists every graph pass in the order
 * it runs, with the lowest -O level that runs it; --disable-pass skips one,
 * a forward pass runs on the forward graph before autodiff (pass_run_forward),
 * --print-ir-after prints the graph after one, and the verifier runs after
 * every pass (it is linear, so always).
 * Needs: a verified, shaped graph. Sets: whatever the passes set. Keeps: a
 * verified graph, or aborts with the name of the pass that broke it.
 */
#include "passes.h"

#include <string.h>

static const struct {
	const char *name;
	int (*run)(IrGraph *g);
	int level;
	bool frozen;	/* runs only on a graph whose weights are frozen (PassOpts.frozen) */
	bool forward;	/* runs on the forward graph, before autodiff */
} table[] = {
	{ "poolrelu", pass_pool_relu, 2, false, true },
	{ "simplify", pass_simplify, 1, false, false },
	{ "fold", pass_fold, 1, false, false },
	{ "bnfold", pass_bnfold, 1, true, false },	/* before dce, which drops the batchnorms it replaced */
	{ "cse", pass_cse, 1, false, false },
	{ "dce", pass_dce, 1, false, false },
	{ "fuse", pass_fuse, 2, false, false },
};

enum { NPASSES = sizeof table / sizeof table[0] };

int pass_count(void) { return NPASSES; }
const char *pass_name(int i) { return table[i].name; }
int pass_min_level(int i) { return table[i].level; }

int pass_lookup(const char *name)
{
	for (int i = 0; i < NPASSES; i++)
		if (!strcmp(table[i].name, name))
			return i;
	return -1;
}

static bool disabled(const PassOpts *o, const char *name)
{
	for (int i = 0; i < o->ndisabled; i++)
		if (!strcmp(o->disabled[i], name))
			return true;
	return false;
}

static void run(IrGraph *g, const PassOpts *o, PassStats *stats, bool forward)
{
	PassOpts none = { 0 };
	if (!o)
		o = &none;
	FILE *out = o->print_to ? o->print_to : stderr;
	for (int i = 0; i < NPASSES; i++) {
		if (table[i].forward != forward || table[i].level > o->olevel || disabled(o, table[i].name) ||
		    (table[i].frozen && !o->frozen))
			continue;
		int fired = table[i].run(g);
		if (stats) {
			stats->fired[i] += fired;
			stats->ran[i] = true;
		}
		char buf[256];
		const char *bad = ir_verify(g, buf, sizeof buf);
		if (bad)
			NNC_BUG("the graph of '%s' fails verification after pass %s: %s", g->name, table[i].name, bad);
		if (o->print_all || (o->print_after && !strcmp(o->print_after, table[i].name))) {
			fprintf(out, "; after %s (%d rewrites)\n", table[i].name, fired);
			ir_print(out, g);
		}
	}
}

void pass_run_all(IrGraph *g, const PassOpts *o, PassStats *stats)
{
	run(g, o, stats, false);
}

void pass_run_forward(IrGraph *g, const PassOpts *o, PassStats *stats)
{
	run(g, o, stats, true);
}
