/* test_wallet_fhir.c — Check suite for the FHIR R4 Consent mapping.
 *
 * Both ways: a grant exported as a Consent imports back to the same grant,
 * for every kind of scope (resource types, observation categories, security
 * labels, our own scope system, data sets) and purpose (PurposeOfUse, DUO);
 * a hand-written Consent with zone offsets and date-only periods maps to the
 * expected window. Then every refusal, one mutation of a valid Consent at a
 * time, each checked for its error code and for naming the construct. Also
 * the node's grant JSON reader. Fixed keys, no randomness, no I/O.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wallet/wallet.h"

#define PATIENT_HEX "1111111111111111111111111111111111111111111111111111111111111111"
#define GRANTEE_HEX "2222222222222222222222222222222222222222222222222222222222222222"

static chain_pubkey patient_key(void)
{
    chain_pubkey k;
    ck_assert_int_eq(wallet_parse_pubkey(&k, PATIENT_HEX), 0);
    return k;
}

static chain_grant sample_grant(void)
{
    chain_grant g;
    memset(&g, 0, sizeof g);
    g.patient = patient_key();
    ck_assert_int_eq(wallet_parse_pubkey(&g.grantee, GRANTEE_HEX), 0);
    g.n_scopes = 3;
    strcpy(g.scopes[0].s, "Observation");
    strcpy(g.scopes[1].s, "laboratory");
    strcpy(g.scopes[2].s, "hiv");
    g.n_purposes = 2;
    strcpy(g.purposes[0].s, "TREAT");
    strcpy(g.purposes[1].s, "DUO:0000042");
    g.not_before = 1767225600;   /* 2026-01-01T00:00:00Z */
    g.not_after = 1798761600;    /* 2027-01-01T00:00:00Z */
    return g;
}

static void assert_same_grant(const chain_grant *a, const chain_grant *b)
{
    uint32_t i;
    ck_assert_mem_eq(a->patient.b, b->patient.b, CHAIN_KEY_LEN);
    ck_assert_mem_eq(a->grantee.b, b->grantee.b, CHAIN_KEY_LEN);
    ck_assert_uint_eq(a->n_scopes, b->n_scopes);
    for (i = 0; i < a->n_scopes; i++)
        ck_assert_str_eq(a->scopes[i].s, b->scopes[i].s);
    ck_assert_uint_eq(a->n_purposes, b->n_purposes);
    for (i = 0; i < a->n_purposes; i++)
        ck_assert_str_eq(a->purposes[i].s, b->purposes[i].s);
    ck_assert_uint_eq(a->not_before, b->not_before);
    ck_assert_uint_eq(a->not_after, b->not_after);
}

/* Export, print, parse the text back, import: what a file round trip does. */
static void round_trip(const chain_grant *g)
{
    chain_pubkey pk = g->patient;
    chain_grant back;
    char err[WALLET_ERR_LEN] = "";
    json_t *c = wallet_fhir_export(g, NULL, 1);
    char *text;
    ck_assert_ptr_nonnull(c);
    text = json_dumps(c, JSON_INDENT(2));
    ck_assert_ptr_nonnull(text);
    memset(&back, 0xab, sizeof back);
    ck_assert_msg(wallet_fhir_import_text(&back, err, text, strlen(text), &pk) == 0, "%s", err);
    assert_same_grant(g, &back);
    free(text);
    json_decref(c);
}

/* ------------------------------------------------------------ both ways */

START_TEST(export_then_import_is_identity)
{
    chain_grant g = sample_grant();
    round_trip(&g);
}
END_TEST

START_TEST(every_scope_kind_round_trips)
{
    static const char *const all[] = {
        "Condition", "imaging", "vital-signs", "social-history", "mental-health", "substance-use",
        "genomic", "sexual-health", "reproductive-health", "demographics", "Patient",
        "dataset:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "laboratory", "hiv", "MolecularSequence", "Specimen",
    };
    chain_grant g = sample_grant();
    uint32_t i;
    g.n_scopes = sizeof all / sizeof all[0];
    ck_assert_uint_le(g.n_scopes, CHAIN_SCOPES_MAX);
    /* Import puts class entries before securityLabel entries: order the
     * grant that way so the comparison is exact. */
    for (i = 0; i < g.n_scopes; i++)
        strcpy(g.scopes[i].s, all[i]);
    {
        chain_grant tmp = g;
        uint32_t k = 0;
        for (i = 0; i < g.n_scopes; i++)
            if (strcmp(all[i], "hiv") && strcmp(all[i], "mental-health") && strcmp(all[i], "substance-use"))
                strcpy(tmp.scopes[k++].s, all[i]);
        for (i = 0; i < g.n_scopes; i++)
            if (!strcmp(all[i], "hiv") || !strcmp(all[i], "mental-health") || !strcmp(all[i], "substance-use"))
                strcpy(tmp.scopes[k++].s, all[i]);
        g = tmp;
    }
    round_trip(&g);
}
END_TEST

START_TEST(purposes_and_odd_times_round_trip)
{
    chain_grant g = sample_grant();
    g.n_purposes = CHAIN_PURPOSES_MAX;
    strcpy(g.purposes[0].s, "HRESCH");
    strcpy(g.purposes[1].s, "DUO:0000006");
    strcpy(g.purposes[2].s, "CLINTRL");
    strcpy(g.purposes[3].s, "DUO:0000043");
    strcpy(g.purposes[4].s, "PUBHLTH");
    strcpy(g.purposes[5].s, "ETREAT");
    strcpy(g.purposes[6].s, "DUO:0000007");
    strcpy(g.purposes[7].s, "BTG");
    g.not_before = 1767225601;   /* not on a day boundary */
    g.not_after = g.not_before + 1;   /* the shortest grant */
    round_trip(&g);
}
END_TEST

START_TEST(export_shape)
{
    chain_grant g = sample_grant();
    chain_hash id;
    json_t *c, *prov;
    memset(id.b, 0xcd, sizeof id.b);
    c = wallet_fhir_export(&g, &id, 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(json_string_value(json_object_get(c, "resourceType")), "Consent");
    ck_assert_str_eq(json_string_value(json_object_get(c, "status")), "inactive");
    ck_assert_uint_eq(strlen(json_string_value(json_object_get(c, "id"))), 64);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(c, "patient"), "identifier"), "value")),
                     PATIENT_HEX);
    prov = json_object_get(c, "provision");
    ck_assert_str_eq(json_string_value(json_object_get(prov, "type")), "permit");
    /* FHIR's end is inclusive: one second before the chain's not_after. */
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(prov, "period"), "end")),
                     "2026-12-31T23:59:59Z");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(prov, "period"), "start")),
                     "2026-01-01T00:00:00Z");
    ck_assert_uint_eq(json_array_size(json_object_get(prov, "class")), 2);
    ck_assert_uint_eq(json_array_size(json_object_get(prov, "securityLabel")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(prov, "securityLabel"), 0), "code")),
                     "HIV");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(prov, "purpose"), 1), "system")),
                     "http://purl.obolibrary.org/obo/duo.owl");
    json_decref(c);
}
END_TEST

START_TEST(export_refuses_impossible_grants)
{
    chain_grant g = sample_grant();
    g.n_scopes = 0;
    ck_assert_ptr_null(wallet_fhir_export(&g, NULL, 1));
    g = sample_grant();
    strcpy(g.scopes[0].s, "Everything");
    ck_assert_ptr_null(wallet_fhir_export(&g, NULL, 1));
    g = sample_grant();
    strcpy(g.purposes[0].s, "FUN");
    ck_assert_ptr_null(wallet_fhir_export(&g, NULL, 1));
    g = sample_grant();
    g.not_after = g.not_before;
    ck_assert_ptr_null(wallet_fhir_export(&g, NULL, 1));
    g = sample_grant();
    g.n_purposes = 0;
    ck_assert_ptr_null(wallet_fhir_export(&g, NULL, 1));
}
END_TEST

/* A Consent as a hospital might write it: zone offsets, date-only end,
 * informational parts, observation categories and v3 labels. */
static const char HAND_WRITTEN[] =
    "{\"resourceType\": \"Consent\", \"id\": \"c-1\", \"meta\": {\"versionId\": \"1\"},\n"
    " \"text\": {\"status\": \"generated\", \"div\": \"<div>x</div>\"},\n"
    " \"identifier\": [{\"value\": \"local-7\"}], \"status\": \"active\",\n"
    " \"scope\": {\"coding\": [{\"system\": \"http://terminology.hl7.org/CodeSystem/consentscope\","
    " \"code\": \"research\"}]},\n"
    " \"category\": [{\"coding\": [{\"system\": \"http://loinc.org\", \"code\": \"57016-8\"}]}],\n"
    " \"patient\": {\"identifier\": {\"system\": \"urn:consent-ledger:key\", \"value\": \"" PATIENT_HEX "\"},"
    " \"display\": \"me\"},\n"
    " \"dateTime\": \"2026-01-01\",\n"
    " \"policyRule\": {\"coding\": [{\"system\": \"http://terminology.hl7.org/CodeSystem/v3-ActCode\","
    " \"code\": \"OPTIN\"}]},\n"
    " \"provision\": {\"type\": \"permit\",\n"
    "  \"period\": {\"start\": \"2026-01-01T01:00:00+01:00\", \"end\": \"2026-06-30\"},\n"
    "  \"actor\": [{\"role\": {\"coding\": [{\"system\": "
    "\"http://terminology.hl7.org/CodeSystem/v3-ParticipationType\", \"code\": \"PRCP\"}]},\n"
    "    \"reference\": {\"identifier\": {\"system\": \"urn:consent-ledger:key\", \"value\": \"" GRANTEE_HEX "\"}}}],\n"
    "  \"action\": [{\"coding\": [{\"system\": \"http://terminology.hl7.org/CodeSystem/consentaction\","
    " \"code\": \"disclose\"}]}],\n"
    "  \"purpose\": [{\"system\": \"http://terminology.hl7.org/CodeSystem/v3-ActReason\", \"code\": \"HRESCH\","
    " \"display\": \"research\"},\n"
    "              {\"system\": \"http://purl.obolibrary.org/obo/duo\", \"code\": \"DUO:0000006\"}],\n"
    "  \"class\": [{\"system\": \"http://hl7.org/fhir/resource-types\", \"code\": \"DiagnosticReport\"},\n"
    "            {\"system\": \"http://terminology.hl7.org/CodeSystem/observation-category\", \"code\": \"imaging\"},\n"
    "            {\"system\": \"urn:consent-ledger:scope\", \"code\": \"genomic\"}],\n"
    "  \"securityLabel\": [{\"system\": \"http://terminology.hl7.org/CodeSystem/v3-ActCode\", \"code\": \"MH\"}]}}\n";

START_TEST(hand_written_consent_maps)
{
    chain_pubkey pk = patient_key();
    chain_grant g;
    char err[WALLET_ERR_LEN] = "";
    ck_assert_msg(wallet_fhir_import_text(&g, err, HAND_WRITTEN, strlen(HAND_WRITTEN), &pk) == 0,
                  "%s", err);
    ck_assert_uint_eq(g.not_before, 1767225600);   /* 01:00+01:00 is midnight UTC */
    ck_assert_uint_eq(g.not_after, 1782864000);    /* 2026-07-01T00:00:00Z: all of June 30 */
    ck_assert_uint_eq(g.n_scopes, 4);
    ck_assert_str_eq(g.scopes[0].s, "DiagnosticReport");
    ck_assert_str_eq(g.scopes[1].s, "imaging");
    ck_assert_str_eq(g.scopes[2].s, "genomic");
    ck_assert_str_eq(g.scopes[3].s, "mental-health");
    ck_assert_uint_eq(g.n_purposes, 2);
    ck_assert_str_eq(g.purposes[0].s, "HRESCH");
    ck_assert_str_eq(g.purposes[1].s, "DUO:0000006");
    ck_assert_mem_eq(g.patient.b, pk.b, CHAIN_KEY_LEN);
    ck_assert_uint_eq(g.grantee.b[0], 0x22);
}
END_TEST

START_TEST(times_with_offsets_and_fractions)
{
    chain_pubkey pk = patient_key();
    chain_grant g;
    char err[WALLET_ERR_LEN];
    json_t *c = wallet_fhir_export(&(chain_grant){0}, NULL, 1);
    chain_grant base = sample_grant();
    ck_assert_ptr_null(c);   /* an all-zero grant is not exportable */
    c = wallet_fhir_export(&base, NULL, 1);
    ck_assert_ptr_nonnull(c);
    json_t *per = json_object_get(json_object_get(c, "provision"), "period");
    json_object_set_new(per, "start", json_string("2025-12-31T19:00:00.000-05:00"));
    json_object_set_new(per, "end", json_string("2026-01-01T00:00:00.5Z"));
    ck_assert_msg(wallet_fhir_import(&g, err, c, &pk) == 0, "%s", err);
    ck_assert_uint_eq(g.not_before, 1767225600);
    ck_assert_uint_eq(g.not_after, 1767225601);
    /* A start with a fraction of a second begins at the next second. */
    json_object_set_new(per, "start", json_string("2025-12-31T23:59:59.25Z"));
    ck_assert_msg(wallet_fhir_import(&g, err, c, &pk) == 0, "%s", err);
    ck_assert_uint_eq(g.not_before, 1767225600);
    json_decref(c);
}
END_TEST

/* ------------------------------------------------------------ refusals */

/* Walks a dotted path ("provision.actor.0.role") to the parent container and
 * the last name. Array steps are decimal indexes. */
static json_t *walk(json_t *root, const char *path, char *last)
{
    char buf[256], *tok, *save = NULL, *next;
    json_t *cur = root;
    snprintf(buf, sizeof buf, "%s", path);
    tok = strtok_r(buf, ".", &save);
    while (tok && (next = strtok_r(NULL, ".", &save)) != NULL) {
        cur = json_is_array(cur) ? json_array_get(cur, (size_t)atoi(tok)) : json_object_get(cur, tok);
        ck_assert_msg(cur != NULL, "no %s in %s", tok, path);
        tok = next;
    }
    strcpy(last, tok);
    return cur;
}

typedef struct {
    const char *path;    /* what to change */
    const char *value;   /* JSON to put there, NULL to delete it */
    int rc;              /* expected error */
    const char *says;    /* expected in the message */
} refusal;

static const refusal REFUSALS[] = {
    {"resourceType", "\"Patient\"", CHAIN_EINVAL, "resourceType must be \"Consent\""},
    {"resourceType", NULL, CHAIN_EINVAL, "resourceType"},
    {"status", "\"draft\"", CHAIN_EINVAL, "Consent.status must be \"active\""},
    {"status", "\"inactive\"", CHAIN_EINVAL, "Consent.status"},
    {"status", NULL, CHAIN_EINVAL, "Consent.status"},
    {"performer", "[]", CHAIN_EINVAL, "Consent.performer is not supported"},
    {"organization", "[]", CHAIN_EINVAL, "Consent.organization is not supported"},
    {"sourceAttachment", "{}", CHAIN_EINVAL, "Consent.sourceAttachment is not supported"},
    {"verification", "[]", CHAIN_EINVAL, "Consent.verification is not supported"},
    {"policy", "[]", CHAIN_EINVAL, "Consent.policy is not supported"},
    {"extension", "[]", CHAIN_EINVAL, "Consent.extension is not supported (extensions"},
    {"modifierExtension", "[]", CHAIN_EINVAL, "Consent.modifierExtension is not supported"},
    {"_status", "{}", CHAIN_EINVAL, "Consent._status is not supported"},
    {"patient", "{\"reference\": \"Patient/1\"}", CHAIN_EINVAL, "Consent.patient: a literal reference"},
    {"patient.identifier.system", "\"urn:oid:1.2.3\"", CHAIN_EINVAL,
     "Consent.patient.identifier.system must be \"urn:consent-ledger:key\""},
    {"patient.identifier.value", "\"abc\"", CHAIN_EINVAL, "Consent.patient.identifier.value must be"},
    {"patient.identifier.value", "\"" GRANTEE_HEX "\"", CHAIN_EPERM, "not the wallet's patient"},
    {"patient.identifier.period", "{}", CHAIN_EINVAL, "Consent.patient.identifier.period is not supported"},
    {"patient.identifier", NULL, CHAIN_EINVAL, "Consent.patient.identifier must be a JSON object"},
    {"scope.coding.0.code", "\"adr\"", CHAIN_ECODE, "Consent.scope.coding: code adr"},
    {"scope.coding", "[]", CHAIN_EINVAL, "Consent.scope.coding must be a list"},
    {"scope", "\"research\"", CHAIN_EINVAL, "Consent.scope must be a JSON object"},
    {"category.0.coding.0.code", "\"11111-1\"", CHAIN_ECODE, "Consent.category.coding: code 11111-1"},
    {"category", "[]", CHAIN_EINVAL, "Consent.category must be a list"},
    {"policyRule.coding.0.code", "\"OPTOUT\"", CHAIN_ECODE, "Consent.policyRule.coding: code OPTOUT"},
    {"dateTime", "5", CHAIN_EINVAL, "Consent.dateTime must be a string"},
    {"provision", NULL, CHAIN_EINVAL, "Consent.provision is missing"},
    {"provision", "[]", CHAIN_EINVAL, "Consent.provision must be a JSON object"},
    {"provision.type", "\"deny\"", CHAIN_EINVAL, "Consent.provision.type must be \"permit\" (got \"deny\")"},
    {"provision.type", NULL, CHAIN_EINVAL, "Consent.provision.type must be \"permit\" (got none)"},
    {"provision.provision", "[{\"type\": \"deny\"}]", CHAIN_EINVAL, "Consent.provision.provision: nested"},
    {"provision.dataPeriod", "{\"start\": \"2020-01-01\"}", CHAIN_EINVAL, "Consent.provision.dataPeriod"},
    {"provision.data", "[]", CHAIN_EINVAL, "Consent.provision.data"},
    {"provision.code", "[]", CHAIN_EINVAL, "Consent.provision.code"},
    {"provision.modifierExtension", "[]", CHAIN_EINVAL, "Consent.provision.modifierExtension"},
    {"provision.foo", "1", CHAIN_EINVAL, "Consent.provision.foo is not supported"},
    {"provision.period", NULL, CHAIN_ETIME, "Consent.provision.period is missing"},
    {"provision.period.end", NULL, CHAIN_ETIME, "needs both start and end"},
    {"provision.period.start", NULL, CHAIN_ETIME, "needs both start and end"},
    {"provision.period.end", "\"2026\"", CHAIN_ETIME, "Consent.provision.period.end: not a FHIR dateTime"},
    {"provision.period.end", "\"2026-12\"", CHAIN_ETIME, "period.end"},
    {"provision.period.end", "\"2026-12-31T10:00:00\"", CHAIN_ETIME, "period.end"},
    {"provision.period.end", "\"2026-12-31T10:00:00+25:00\"", CHAIN_ETIME, "period.end"},
    {"provision.period.end", "\"2026-12-31T10:00:00+0100\"", CHAIN_ETIME, "period.end"},
    {"provision.period.end", "\"2026-02-30\"", CHAIN_ETIME, "period.end"},
    {"provision.period.end", "7", CHAIN_ETIME, "needs both start and end"},
    {"provision.period.start", "\"yesterday\"", CHAIN_ETIME, "Consent.provision.period.start: not a FHIR"},
    {"provision.period.start", "\"2027-02-01\"", CHAIN_ETIME, "ends before it starts"},
    {"provision.period.end", "\"2127-01-01\"", CHAIN_ETIME, "longer than 100 years"},
    {"provision.period.extension", "[]", CHAIN_EINVAL, "Consent.provision.period.extension"},
    {"provision.actor", NULL, CHAIN_EINVAL, "Consent.provision.actor must be a list"},
    {"provision.actor", "[]", CHAIN_EINVAL, "Consent.provision.actor must be a list"},
    {"provision.actor.1", "{}", CHAIN_EINVAL, "2 actors; a grant has exactly one recipient"},
    {"provision.actor.0.role", NULL, CHAIN_EINVAL, "Consent.provision.actor.role is missing"},
    {"provision.actor.0.role.coding.0.code", "\"AUT\"", CHAIN_ECODE,
     "Consent.provision.actor.role.coding: code AUT"},
    {"provision.actor.0.role.coding.0.system", "\"http://example.org/roles\"", CHAIN_ECODE,
     "system http://example.org/roles is not supported"},
    {"provision.actor.0.reference", "{\"reference\": \"Organization/9\"}", CHAIN_EINVAL,
     "Consent.provision.actor.reference: a literal reference"},
    {"provision.actor.0.reference.identifier.value", "\"zz\"", CHAIN_EINVAL,
     "Consent.provision.actor.reference.identifier.value"},
    {"provision.actor.0.period", "{}", CHAIN_EINVAL, "Consent.provision.actor.period is not supported"},
    {"provision.purpose", NULL, CHAIN_EINVAL, "Consent.provision.purpose must be a list"},
    {"provision.purpose.0.system", "\"http://snomed.info/sct\"", CHAIN_ECODE,
     "Consent.provision.purpose: code TREAT of system http://snomed.info/sct"},
    {"provision.purpose.0.code", "\"PLAY\"", CHAIN_ECODE, "code PLAY"},
    {"provision.purpose.0.code", "\"DUO:0000042\"", CHAIN_ECODE, "code DUO:0000042"},
    {"provision.purpose.1.code", "\"TREAT\"", CHAIN_ECODE, "code TREAT"},
    {"provision.purpose.1.code", "\"DUO:0000001\"", CHAIN_ECODE, "code DUO:0000001"},
    {"provision.purpose.2", "{\"system\": \"http://terminology.hl7.org/CodeSystem/v3-ActReason\", "
                            "\"code\": \"TREAT\"}", CHAIN_EINVAL, "TREAT listed twice"},
    {"provision.purpose.0.code", NULL, CHAIN_EINVAL, "Consent.provision.purpose needs a system and a code"},
    {"provision.purpose.0.extension", "[]", CHAIN_EINVAL, "Consent.provision.purpose.extension"},
    {"provision.purpose.0", "\"TREAT\"", CHAIN_EINVAL, "Consent.provision.purpose must be a JSON object"},
    {"provision.class.0.code", "\"Medication\"", CHAIN_ECODE, "Consent.provision.class: code Medication"},
    {"provision.class.0.code", "\"laboratory\"", CHAIN_ECODE, "code laboratory of system http://hl7.org/fhir/resource-types"},
    {"provision.class.1.code", "\"survey\"", CHAIN_ECODE, "code survey"},
    {"provision.class.0.system", "\"http://snomed.info/sct\"", CHAIN_ECODE, "system http://snomed.info/sct"},
    {"provision.class.2", "{\"system\": \"urn:consent-ledger:scope\", \"code\": \"laboratory\"}",
     CHAIN_EINVAL, "laboratory listed twice"},
    {"provision.class", "[]", CHAIN_EINVAL, "Consent.provision.class must be a list"},
    {"provision.securityLabel.0.code", "\"R\"", CHAIN_ECODE, "Consent.provision.securityLabel: code R"},
    {"provision.securityLabel.0.system", "\"http://terminology.hl7.org/CodeSystem/v3-Confidentiality\"",
     CHAIN_ECODE, "v3-Confidentiality is not supported"},
    {"provision.action", "[{\"coding\": [{\"system\": \"http://terminology.hl7.org/CodeSystem/consentaction\", "
                         "\"code\": \"correct\"}]}]", CHAIN_ECODE, "Consent.provision.action.coding: code correct"},
    {"provision.action", "[{\"text\": \"read\"}]", CHAIN_EINVAL, "Consent.provision.action.coding must be a list"},
};

static json_t *valid_consent(void)
{
    chain_grant g = sample_grant();
    json_t *c = wallet_fhir_export(&g, NULL, 1);
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(each_refusal_names_its_construct)
{
    const refusal *r = &REFUSALS[_i];
    chain_pubkey pk = patient_key();
    chain_grant g, untouched;
    char err[WALLET_ERR_LEN] = "", last[64];
    json_t *c = valid_consent(), *parent;
    int rc;
    ck_assert_int_eq(wallet_fhir_import(&g, err, c, &pk), 0);   /* valid before */
    parent = walk(c, r->path, last);
    if (!r->value) {
        ck_assert_int_eq(json_object_del(parent, last), 0);
    } else {
        json_t *v = json_loads(r->value, JSON_DECODE_ANY, NULL);
        ck_assert_ptr_nonnull(v);
        if (json_is_array(parent) && (size_t)atoi(last) < json_array_size(parent))
            ck_assert_int_eq(json_array_set_new(parent, (size_t)atoi(last), v), 0);
        else if (json_is_array(parent))
            ck_assert_int_eq(json_array_append_new(parent, v), 0);
        else
            ck_assert_int_eq(json_object_set_new(parent, last, v), 0);
    }
    memset(&g, 0x5a, sizeof g);
    untouched = g;
    rc = wallet_fhir_import(&g, err, c, &pk);
    ck_assert_msg(rc == r->rc, "%s: rc %d, want %d (%s)", r->path, rc, r->rc, err);
    ck_assert_msg(strstr(err, r->says) != NULL, "%s: message \"%s\" lacks \"%s\"", r->path, err,
                  r->says);
    ck_assert_mem_eq(&g, &untouched, sizeof g);   /* nothing written on error */
    json_decref(c);
}
END_TEST

START_TEST(array_replacement_refusals)
{
    /* Replacing (not appending) an array entry: the actor given as a string,
     * and too many scopes. */
    chain_pubkey pk = patient_key();
    chain_grant g;
    char err[WALLET_ERR_LEN] = "";
    json_t *c = valid_consent(), *cls;
    uint32_t i;
    json_array_set_new(json_object_get(json_object_get(c, "provision"), "actor"), 0, json_string("x"));
    ck_assert_int_eq(wallet_fhir_import(&g, err, c, &pk), CHAIN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "Consent.provision.actor must be a JSON object"));
    json_decref(c);

    c = valid_consent();
    cls = json_object_get(json_object_get(c, "provision"), "class");
    json_array_clear(cls);
    for (i = 0; i < CHAIN_SCOPES_MAX + 1; i++) {
        char code[80];
        snprintf(code, sizeof code, "dataset:%064x", i);
        json_array_append_new(cls, json_pack("{s:s, s:s}", "system", "urn:consent-ledger:scope",
                                             "code", code));
    }
    ck_assert_int_eq(wallet_fhir_import(&g, err, c, &pk), CHAIN_EBOUNDS);
    ck_assert_ptr_nonnull(strstr(err, "more than 16 codes"));
    json_decref(c);

    c = valid_consent();
    cls = json_object_get(json_object_get(c, "provision"), "class");
    for (i = 0; i < 40; i++)
        json_array_append_new(cls, json_pack("{s:s, s:s}", "system", "x", "code", "y"));
    ck_assert_int_eq(wallet_fhir_import(&g, err, c, &pk), CHAIN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "list of 1..32 entries"));
    json_decref(c);

    /* No class and no securityLabel: a grant never covers everything. */
    c = valid_consent();
    json_object_del(json_object_get(c, "provision"), "class");
    json_object_del(json_object_get(c, "provision"), "securityLabel");
    ck_assert_int_eq(wallet_fhir_import(&g, err, c, &pk), CHAIN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "names no data"));
    json_decref(c);
}
END_TEST

START_TEST(text_level_refusals)
{
    chain_pubkey pk = patient_key();
    chain_grant g;
    char err[WALLET_ERR_LEN] = "";
    static const char dup[] = "{\"resourceType\": \"Consent\", \"status\": \"active\", \"status\": \"active\"}";
    char *big;
    ck_assert_int_eq(wallet_fhir_import_text(&g, err, "{", 1, &pk), CHAIN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not JSON"));
    ck_assert_int_eq(wallet_fhir_import_text(&g, err, dup, strlen(dup), &pk), CHAIN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not JSON"));
    ck_assert_int_eq(wallet_fhir_import_text(&g, err, "[1]", 3, &pk), CHAIN_EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not a FHIR resource"));
    big = calloc(1, WALLET_FHIR_BYTES_MAX + 2);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', WALLET_FHIR_BYTES_MAX + 1);
    ck_assert_int_eq(wallet_fhir_import_text(&g, err, big, WALLET_FHIR_BYTES_MAX + 1, &pk), CHAIN_EBOUNDS);
    ck_assert_ptr_nonnull(strstr(err, "over"));
    free(big);
    {
        json_t *one = json_integer(1);
        ck_assert_int_eq(wallet_fhir_import(&g, err, one, &pk), CHAIN_EINVAL);
        json_decref(one);
    }
}
END_TEST

/* ------------------------------------------------------------ node JSON */

static json_t *node_grant(void)
{
    return json_pack("{s:s, s:s, s:s, s:[s,s], s:[s], s:I, s:I, s:s, s:I}", "id",
                     "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", "patient",
                     PATIENT_HEX, "grantee", GRANTEE_HEX, "scopes", "Observation", "imaging",
                     "purposes", "TREAT", "not_before", (json_int_t)100, "not_after",
                     (json_int_t)200, "status", "revoked", "granted_height", (json_int_t)3);
}

START_TEST(grant_from_node_json)
{
    chain_grant g;
    chain_hash id;
    int active = 7;
    char err[WALLET_ERR_LEN];
    json_t *j = node_grant();
    ck_assert_int_eq(wallet_grant_from_json(&g, &id, &active, err, j), 0);
    ck_assert_int_eq(active, 0);
    ck_assert_uint_eq(id.b[0], 0xcd);
    ck_assert_uint_eq(g.n_scopes, 2);
    ck_assert_str_eq(g.scopes[1].s, "imaging");
    ck_assert_uint_eq(g.not_after, 200);
    json_object_set_new(j, "status", json_string("active"));
    ck_assert_int_eq(wallet_grant_from_json(&g, &id, &active, err, j), 0);
    ck_assert_int_eq(active, 1);
    json_decref(j);
}
END_TEST

START_TEST(grant_from_node_json_refusals)
{
    static const char *const bad[][2] = {
        {"id", "\"xx\""}, {"patient", "1"}, {"grantee", "null"}, {"scopes", "[]"},
        {"scopes", "[\"Nope\"]"}, {"purposes", "[\"NOPE\"]"}, {"purposes", "\"TREAT\""},
        {"not_before", "\"1\""}, {"not_after", "-5"}, {"not_after", "50"}, {"status", "\"gone\""},
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        chain_grant g;
        chain_hash id;
        int active;
        char err[WALLET_ERR_LEN] = "";
        json_t *j = node_grant();
        json_object_set_new(j, bad[i][0], json_loads(bad[i][1], JSON_DECODE_ANY, NULL));
        ck_assert_msg(wallet_grant_from_json(&g, &id, &active, err, j) == WALLET_EJSON, "%s", bad[i][0]);
        ck_assert_ptr_nonnull(strstr(err, "not what the API promises"));
        json_decref(j);
    }
    {
        chain_grant g;
        chain_hash id;
        int active;
        char err[WALLET_ERR_LEN];
        json_t *x = json_string("x");
        ck_assert_int_eq(wallet_grant_from_json(&g, &id, &active, err, x), WALLET_EJSON);
        json_decref(x);
    }
}
END_TEST

static Suite *fhir_suite(void)
{
    Suite *s = suite_create("wallet_fhir");
    TCase *both = tcase_create("both_ways");
    TCase *ref = tcase_create("refusals");
    TCase *node = tcase_create("node_json");
    tcase_add_test(both, export_then_import_is_identity);
    tcase_add_test(both, every_scope_kind_round_trips);
    tcase_add_test(both, purposes_and_odd_times_round_trip);
    tcase_add_test(both, export_shape);
    tcase_add_test(both, export_refuses_impossible_grants);
    tcase_add_test(both, hand_written_consent_maps);
    tcase_add_test(both, times_with_offsets_and_fractions);
    tcase_add_loop_test(ref, each_refusal_names_its_construct, 0,
                        (int)(sizeof REFUSALS / sizeof REFUSALS[0]));
    tcase_add_test(ref, array_replacement_refusals);
    tcase_add_test(ref, text_level_refusals);
    tcase_add_test(node, grant_from_node_json);
    tcase_add_test(node, grant_from_node_json_refusals);
    suite_add_tcase(s, both);
    suite_add_tcase(s, ref);
    suite_add_tcase(s, node);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(fhir_suite());
    int failed;
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
