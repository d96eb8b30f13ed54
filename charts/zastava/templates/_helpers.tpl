{{/*
The prefix of every object name: the release name when it already says "zastava", else
"<release>-zastava" (release zastava: zastava-operator, zastava-webhook, ...).
*/}}
{{- define "zastava.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "zastava.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Object names, one per thing the code is told about through a flag. */}}
{{- define "zastava.operator.name" -}}{{ include "zastava.fullname" . }}-operator{{- end -}}
{{- define "zastava.webhook.name" -}}{{ include "zastava.fullname" . }}-webhook{{- end -}}
{{- define "zastava.observer.name" -}}{{ include "zastava.fullname" . }}-observer{{- end -}}
{{- define "zastava.webhook.caSecret" -}}{{ include "zastava.fullname" . }}-webhook-ca{{- end -}}
{{- define "zastava.webhook.tlsSecret" -}}
{{- .Values.webhook.tls.secretName | default (printf "%s-webhook-tls" (include "zastava.fullname" .)) -}}
{{- end -}}
{{/* The ValidatingWebhookConfiguration (cluster-scoped: it carries the release's name). */}}
{{- define "zastava.webhook.configName" -}}{{ include "zastava.fullname" . }}-webhook{{- end -}}
{{- define "zastava.operator.leaseName" -}}{{ include "zastava.fullname" . }}-operator{{- end -}}

{{- define "zastava.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "zastava.labels" -}}
helm.sh/chart: {{ include "zastava.chart" .ctx }}
{{ include "zastava.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: zastava
{{- end -}}

{{/* What the workloads select their pods by (immutable once installed). */}}
{{- define "zastava.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zastava.name" .ctx }}-{{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
An image reference: REGISTRY/REPOSITORY@DIGEST when a digest is set, else
REGISTRY/REPOSITORY:TAG (tag: image.tag, else the chart's appVersion). Call with
(dict "ctx" $ "image" .Values.operator.image).
*/}}
{{- define "zastava.image" -}}
{{- $registry := .ctx.Values.image.registry | trimSuffix "/" -}}
{{- $repository := .image.repository -}}
{{- $name := ternary $repository (printf "%s/%s" $registry $repository) (empty $registry) -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $name .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $name (.ctx.Values.image.tag | default .ctx.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/*
The security context of the operator and webhook containers: non-root (the images' user
65532), read-only root filesystem, no privilege escalation, no capabilities.
*/}}
{{- define "zastava.restrictedContainerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "zastava.restrictedPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Scheduling of the two-replica Deployments: preferred anti-affinity and a topology spread over
nodes, neither required (a one-node cluster runs both replicas on its node). Call with
(dict "ctx" $ "component" "webhook" "values" .Values.webhook).
*/}}
{{- define "zastava.spread" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
affinity:
{{- if .values.affinity }}
  {{- toYaml .values.affinity | nindent 2 }}
{{- else }}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "zastava.selectorLabels" . | nindent 14 }}
{{- end }}
topologySpreadConstraints:
{{- if .values.topologySpreadConstraints }}
  {{- toYaml .values.topologySpreadConstraints | nindent 2 }}
{{- else }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "zastava.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* The PodDisruptionBudget's API: policy/v1 from Kubernetes 1.21, policy/v1beta1 before. */}}
{{- define "zastava.pdbApiVersion" -}}
{{- if or (.Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version) -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}
